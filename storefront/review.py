"""What staff watch on the shop floor: live sessions and the review queue of flagged events.

The review queue lists every unresolved review flag (``cart.projections.CartFlag``) of
the sessions that are not settled (open, shopping, exited, staffed), oldest sensor time
first. A flag is decided in one of three ways, each on top of the staffed checkout
(``storefront.staffed.StaffedCheckout``), so every change is an audited correction with
the role's limit and every decision is a stored flag resolution:

* ``accept``: the event stands. The line keeps what the event did; an event left out
  of the lines for its low confidence is counted after all (a correction adds it);
* ``correct``: staff counted the goods: the line is set to the corrected quantity;
* ``reject``: the event is wrong: what it did to its line is undone (a correction).

A flag can only be decided once its session is at the staffed checkout (status
``staffed``): while the shopper is still in the store the cart keeps changing, and a
correction (an absolute quantity) would silently override later picks. Every flagged
session is sent to the staffed checkout when the shopper exits, so a live session's
flags are listed (with that reason) and refused with Conflict until then.

Deciding claims the session for the reviewer when nobody holds it (Conflict while
another staff member's claim is live) and gives the claim back afterwards; a claim
the reviewer already held is kept. Quantities are units, or grams for weighed goods.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Literal, get_args

from cart.errors import SessionNotFound
from cart.event_store import EventStore
from cart.events import (
    DEVICE_EVENT_TYPES,
    DeviceEvent,
    Event,
    ItemPicked,
    ItemPutBack,
    WeighedItemAdded,
)
from cart.projections import cart_contents
from cart.service import SessionService
from cart.sql_event_store import SqlEventStore
from storefront.catalog import Catalogue
from storefront.errors import Conflict, InvalidInput, NotFound, StorefrontError
from storefront.sessions import SessionReadModel, SessionView
from storefront.shoppers import ShopperService
from storefront.staffed import MAX_QUANTITY, CorrectionView, FlagView, StaffedCart, StaffedCheckout

if TYPE_CHECKING:
    from storefront.bootstrap import Container

Decision = Literal["accept", "correct", "reject"]
DECISIONS: tuple[str, ...] = get_args(Decision)
LIVE_STATUSES = ("open", "shopping")
"""Read-model statuses of sessions whose shopper is in the store."""
REVIEW_STATUSES = ("open", "shopping", "exited", "staffed")
"""Statuses of sessions whose flags are listed (every status but settled and abandoned)."""
MAX_REASON = 250  # leaves room for the decision's prefix within the 300-character notes


@dataclass(frozen=True)
class LiveSession:
    """A session in the store now: ``items`` counts units (a weighed line counts once)."""

    session_id: str
    shopper_id: str
    shopper_name: str | None
    opened_at: datetime
    items: int
    flags: int


@dataclass(frozen=True)
class ReviewItem:
    """One unresolved flag; ``waiting_for`` says why it cannot be decided yet (or None)."""

    session_id: str
    session_status: str
    device_id: str
    device_seq: int
    sensor_time: datetime | None
    product_code: str | None
    product_name: str | None
    reason: str
    detail: str
    waiting_for: str | None


@dataclass(frozen=True)
class ReviewOutcome:
    """A decided flag: the correction it made (None when the line was right) and the
    session's flags afterwards."""

    session_id: str
    device_id: str
    device_seq: int
    decision: str
    correction: CorrectionView | None
    flags: tuple[FlagView, ...]


class ReviewQueue:
    """Lists live sessions and flags; decides flags through the staffed checkout."""

    def __init__(self, *, staffed: StaffedCheckout, read_model: SessionReadModel,
                 carts: SessionService, events: EventStore, catalogue: Catalogue,
                 shoppers: ShopperService, min_confidence: float) -> None:
        self._staffed = staffed
        self._read_model = read_model
        self._carts = carts
        self._events = events
        self._catalogue = catalogue
        self._shoppers = shoppers
        self._min_confidence = min_confidence

    @classmethod
    def of(cls, c: Container) -> ReviewQueue:
        """The review queue over a container's services and database."""
        return cls(staffed=c.staffed, read_model=c.read_model, carts=c.carts,
                   events=SqlEventStore(c.engine), catalogue=c.catalogue, shoppers=c.shoppers,
                   min_confidence=c.settings.min_event_confidence)

    # --- listings ---------------------------------------------------------------------

    def live(self) -> list[LiveSession]:
        """Sessions in the store now (open or shopping), earliest entry first."""
        out = []
        for view in sorted(self._with_status(LIVE_STATUSES), key=lambda v: (v.opened_at, v.id)):
            try:
                contents = self._carts.cart(view.id)
            except SessionNotFound:
                continue  # the read model is written after the log: not there yet
            out.append(LiveSession(view.id, view.shopper_id, self._shopper_name(view),
                                   view.opened_at, sum(contents.lines.values())
                                   + len(contents.weighed), len(contents.flags)))
        return out

    def pending(self) -> list[ReviewItem]:
        """Every unresolved flag of sessions not settled, oldest sensor time first."""
        items: list[ReviewItem] = []
        for view in self._with_status(REVIEW_STATUSES):
            try:
                if not self._carts.cart(view.id).flags:
                    continue
            except SessionNotFound:
                continue
            times = {key: event.sensor_time for key, event in self._device_events(view.id)}
            waiting = None if view.status == "staffed" else _waiting(view)
            for flag in self._staffed.cart(view.id).flags:
                if flag.resolved_by is None:
                    items.append(ReviewItem(
                        view.id, view.status, flag.device_id, flag.device_seq,
                        times.get((flag.device_id, flag.device_seq)), flag.product_code,
                        self._product_name(flag.product_code), flag.reason, flag.detail,
                        waiting))
        items.sort(key=lambda i: (i.sensor_time is None, i.sensor_time or datetime.min,
                                  i.session_id, i.device_id, i.device_seq, i.reason))
        return items

    # --- deciding ---------------------------------------------------------------------

    def decide(self, *, session_id: str, device_id: str, device_seq: int, staff_id: str,
               decision: str, reason: str, corrected_quantity: int | None = None,
               max_change: int | None = None) -> ReviewOutcome:
        """Decide the flags of one device event (see the module docstring).

        ``corrected_quantity`` (units or grams) is required for ``correct``;
        ``max_change`` is the role's correction limit (None: no limit). Raises
        InvalidInput (unknown decision, no reason, bad quantity, a correction of a
        flag naming no product), NotFound (no such session or flag), Conflict (the
        session is not at the staffed checkout, the flag is already resolved, another
        staff member holds the claim, tenders were taken), PermissionDenied (the
        change is over ``max_change``), UnknownProduct.
        """
        reason = _reason(reason)
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}")
        if decision == "correct":
            corrected_quantity = _quantity(corrected_quantity)
        view = self._read_model.get(session_id)
        if view.status != "staffed":
            raise Conflict(_waiting(view))
        cart = self._staffed.cart(session_id)
        flags = [f for f in cart.flags if (f.device_id, f.device_seq) == (device_id, device_seq)]
        if not flags:
            raise NotFound(f"no review flag for device event {device_id}#{device_seq} "
                           f"in session {session_id}")
        done = [f for f in flags if f.resolved_by is not None]
        if len(done) == len(flags):
            raise Conflict(f"flag {device_id}#{device_seq} was already resolved by "
                           f"staff {done[0].resolved_by}")
        code = next((f.product_code for f in flags if f.product_code), None)
        marker = f"flag {device_id}#{device_seq}"
        target = self._target(cart, code, decision, corrected_quantity, (device_id, device_seq))
        claimed_here = self._hold(cart, staff_id)
        try:
            correction = None
            if code is not None and target is not None and not _applied(cart, code, marker):
                correction = self._staffed.correct(
                    session_id=session_id, staff_id=staff_id, product_code=code,
                    quantity=target, reason=f"review {decision} of {marker}: {reason}"[:300],
                    max_change=max_change)
            flags_after = self._staffed.resolve_flag(
                session_id=session_id, staff_id=staff_id, device_id=device_id,
                device_seq=device_seq, note=f"{decision}: {reason}")
        finally:
            if claimed_here:
                with contextlib.suppress(StorefrontError):
                    self._staffed.release(session_id=session_id, staff_id=staff_id)
        return ReviewOutcome(session_id, device_id, device_seq, decision, correction,
                             tuple(flags_after))

    # --- internals --------------------------------------------------------------------

    def _target(self, cart: StaffedCart, code: str | None, decision: str,
                corrected: int | None, key: tuple[str, int]) -> int | None:
        """The line's new quantity, or None when the line stays as it is."""
        if code is None:
            if decision == "correct":
                raise InvalidInput("this flag names no product: accept or reject it, and "
                                   "correct the line on the session's checkout page")
            return None
        if decision == "correct":
            return corrected
        events = [stored.event for stored in self._events.load(cart.session_id)]
        counted = self._quantity_of(events, code)
        current = _current(cart, code, counted)
        if decision == "accept":
            boosted = [_full_confidence(e) if _key(e) == key else e for e in events]
            target = current + self._quantity_of(boosted, code) - counted
        else:
            without = [e for e in events if _key(e) != key]
            target = current - (counted - self._quantity_of(without, code))
        target = min(max(target, 0), MAX_QUANTITY)
        return None if target == current else target

    def _quantity_of(self, events: list[Event], code: str) -> int:
        contents = cart_contents(events, min_confidence=self._min_confidence)
        weighed = contents.weighed.get(code)
        return contents.lines.get(code, 0) + (weighed.grams if weighed else 0)

    def _hold(self, cart: StaffedCart, staff_id: str) -> bool:
        """Claim the session unless ``staff_id`` holds it; True when claimed here."""
        if cart.claim is not None and cart.claim.staff_id == staff_id:
            return False
        self._staffed.claim(session_id=cart.session_id, staff_id=staff_id)
        return True

    def _with_status(self, statuses: tuple[str, ...]) -> list[SessionView]:
        return list(chain.from_iterable(self._read_model.with_status(s) for s in statuses))

    def _device_events(self, session_id: str) -> list[tuple[tuple[str, int], DeviceEvent]]:
        return [(s.event.device_key, s.event) for s in self._events.load(session_id)
                if isinstance(s.event, DEVICE_EVENT_TYPES)]

    def _shopper_name(self, view: SessionView) -> str | None:
        try:
            return self._shoppers.get(view.shopper_id).display_name
        except NotFound:
            return None

    def _product_name(self, code: str | None) -> str | None:
        if code is None:
            return None
        try:
            return self._catalogue.get(code).name
        except StorefrontError:
            return None


def _key(event: Event) -> tuple[str, int] | None:
    return event.device_key if isinstance(event, DEVICE_EVENT_TYPES) else None


def _full_confidence(event: Event) -> Event:
    """The event as if its sensor had been sure of it (events without a confidence as is)."""
    if isinstance(event, ItemPicked | ItemPutBack | WeighedItemAdded):
        return replace(event, confidence=1.0)
    return event


def _current(cart: StaffedCart, code: str, counted: int) -> int:
    """The line's quantity with staff corrections applied (the last one wins)."""
    mine = [c for c in cart.corrections if c.product_code == code]
    return mine[-1].quantity_after if mine else counted


def _applied(cart: StaffedCart, code: str, marker: str) -> bool:
    """True when a correction for this flag was made (a decision retried after a failure)."""
    return any(c.product_code == code and f" {marker}:" in c.reason for c in cart.corrections)


def _waiting(view: SessionView) -> str:
    return (f"session {view.id} is {view.status}: its flags are decided at the staffed "
            f"checkout, where a flagged session goes when the shopper exits")


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if not 1 <= len(text) <= MAX_REASON:
        raise InvalidInput(f"a reason is required (1-{MAX_REASON} characters)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidInput("the reason may not contain control characters")
    return text


def _quantity(value: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUANTITY:
        raise InvalidInput(f"the corrected quantity must be a whole number from 0 to "
                           f"{MAX_QUANTITY}")
    return value
