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

An accept or reject works the line's new quantity out from the event log's counts, so it
is refused (Conflict) when that would change a line from a count in another measure than
the product's: a product sold by weight (grams, priced per kg) counted in units, or a
product sold in units that was weighed. Its correction would price 2 apples as 2 g and
clear the cart's issue that the line needs its weight; staff decide such a flag with
``correct`` and the weight in grams (or the count) instead. An accept or reject that
changes no line is made as usual, and the line's issue stays until it is corrected.

A flag can only be decided once its session is at the staffed checkout (status
``staffed``): while the shopper is still in the store the cart keeps changing, and a
correction (an absolute quantity) would silently override later picks. Every flagged
session is sent to the staffed checkout when the shopper exits, so a live session's
flags are listed (with that reason) and refused with Conflict until then.

Deciding claims the session for the reviewer when nobody holds it (Conflict while
another staff member's claim is live) and gives the claim back afterwards; a claim
the reviewer already held is kept. A flag is decided once: the same decision sent again
(a retry) answers with its stored outcome, another one is Conflict. The check that the
flag is unresolved, the correction and the resolution are one write, guarded by the
claim (``StaffedCheckout.resolve_flag``), so of two decisions racing on one flag exactly
one changes the cart. The staff web
console and the JSON API (``POST /staff/sessions/{id}/flags/resolve``) both decide
through :meth:`ReviewQueue.decide`. Quantities are units, or grams for weighed goods.
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
from cart.projections import CartContents, cart_contents
from cart.service import SessionService
from cart.sql_event_store import SqlEventStore
from storefront.catalog import Catalogue
from storefront.errors import Conflict, InvalidInput, NotFound, StorefrontError
from storefront.sessions import SessionReadModel, SessionView
from storefront.shoppers import ShopperService
from storefront.staffed import (
    MAX_QUANTITY,
    CorrectionView,
    FlagCorrection,
    FlagView,
    StaffedCart,
    StaffedCheckout,
)

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
        ``max_change`` is the role's correction limit (None: no limit).

        A decision sent again for a flag it resolved (the same decision and reason and,
        for ``correct``, the same quantity) is a replay: nothing changes and the answer
        is the stored outcome (the correction the decision made, if any, and the
        session's flags now), also after the sale is closed. Anything else for a
        resolved flag is Conflict, naming what was decided.

        Raises InvalidInput (unknown decision, no reason, bad quantity, a correction of a
        flag naming no product), NotFound (no such session or flag), Conflict (the
        session is not at the staffed checkout, the flag is already resolved otherwise,
        another staff member holds the claim, tenders were taken, an accept or reject
        would set a line from a count in another measure than the product's: see the
        module docstring; the line was corrected while the decision was worked out),
        PermissionDenied (the
        change is over ``max_change``), UnknownProduct.
        """
        reason = _reason(reason)
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}")
        if decision == "correct":
            corrected_quantity = _quantity(corrected_quantity)
        view = self._read_model.get(session_id)
        cart = self._staffed.cart(session_id)
        flags = [f for f in cart.flags if (f.device_id, f.device_seq) == (device_id, device_seq)]
        code = next((f.product_code for f in flags if f.product_code), None)
        marker = f"flag {device_id}#{device_seq}"
        if flags and all(f.resolved_by is not None for f in flags):
            return _replay(cart, flags, code, decision, reason, corrected_quantity)
        if view.status != "staffed":
            raise Conflict(_waiting(view))
        if not flags:
            raise NotFound(f"no review flag for device event {device_id}#{device_seq} "
                           f"in session {session_id}")
        target = self._target(cart, code, decision, corrected_quantity, (device_id, device_seq))
        change = None
        if code is not None and target is not None and not _applied(cart, code, marker):
            mine = [c for c in cart.corrections if c.product_code == code]
            change = FlagCorrection(code, target, f"review {decision} of {marker}: {reason}"[:300],
                                    exact=decision == "correct",
                                    basis=mine[-1].id if mine else None)
        claimed_here = self._hold(cart, staff_id)
        try:
            # The check that the flag is unresolved, the correction and the resolution
            # are one guarded write: of two racing decisions exactly one changes the cart.
            flags_after = self._staffed.resolve_flag(
                session_id=session_id, staff_id=staff_id, device_id=device_id,
                device_seq=device_seq, note=f"{decision}: {reason}", correction=change,
                max_change=max_change)
        except Conflict:
            after = self._staffed.cart(session_id)
            mine_now = [f for f in after.flags if (f.device_id, f.device_seq) == (device_id,
                                                                                   device_seq)]
            if mine_now and all(f.resolved_by is not None for f in mine_now):
                # Another request decided it first: its outcome if it was this decision.
                return _replay(after, mine_now, code, decision, reason, corrected_quantity)
            raise
        finally:
            if claimed_here:
                with contextlib.suppress(StorefrontError):
                    self._staffed.release(session_id=session_id, staff_id=staff_id)
        correction = None if change is None else _made(self._staffed.cart(session_id),
                                                       code, marker)
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
        if decision == "accept":
            other = [_full_confidence(e) if _key(e) == key else e for e in events]
        else:
            other = [e for e in events if _key(e) != key]
        now, then = (cart_contents(log, min_confidence=self._min_confidence)
                     for log in (events, other))
        counted = _quantity_of(now, code)
        current = _current(cart, code, counted)
        target = min(max(current + _quantity_of(then, code) - counted, 0), MAX_QUANTITY)
        if target == current:
            return None
        self._same_measure(code, (now, then))
        return target

    def _same_measure(self, code: str, carts: tuple[CartContents, ...]) -> None:
        """Conflict unless every count of ``code`` in ``carts`` (the event log's cart, and
        as the decision would have it) is in the product's measure: grams for a product sold by
        weight, units otherwise. An accept or reject works the line's quantity out from
        those counts, so a count in units of a product priced per kg would become grams
        (2 apples priced as 2 g), and its correction would also clear the cart's issue
        that the line needs its weight; staff decide such a flag with ``correct`` and
        the quantity they weighed or counted instead."""
        item = self._catalogue.get(code)
        for contents in carts:
            if item.sold_by_weight and contents.lines.get(code, 0):
                raise Conflict(f"{code} is sold by weight: decide with correct and its "
                               f"weight in grams (it is counted in units here, and an "
                               f"accept or reject would set its line from that count)")
            if not item.sold_by_weight and code in contents.weighed:
                raise Conflict(f"{code} is sold in units: decide with correct and its "
                               f"quantity in units (it was weighed here, and an accept or "
                               f"reject would set its line from the grams)")

    def _hold(self, cart: StaffedCart, staff_id: str) -> bool:
        """Claim the session unless ``staff_id`` holds it; True when claimed here."""
        if cart.claim is not None and cart.claim.staff_id == staff_id:
            return False
        try:
            self._staffed.claim(session_id=cart.session_id, staff_id=staff_id)
        except Conflict:
            # Another request of the same staff member (a double click, the console and
            # the API at once) claimed it at the same moment: it is theirs to give back.
            claim = self._staffed.cart(cart.session_id).claim
            if claim is None or claim.staff_id != staff_id:
                raise
            return False
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
    return _made(cart, code, marker) is not None


def _made(cart: StaffedCart, code: str | None, marker: str) -> CorrectionView | None:
    """The last correction made for this flag (``marker``: ``flag <device>#<seq>``)."""
    mine = [c for c in cart.corrections if c.product_code == code and f" {marker}:" in c.reason]
    return mine[-1] if mine else None


def _replay(cart: StaffedCart, flags: list[FlagView], code: str | None, decision: str,
            reason: str, corrected: int | None) -> ReviewOutcome:
    """The stored outcome of the resolved ``flags`` (of one device event) when this is
    the decision that resolved them; Conflict, naming that decision, otherwise."""
    first = flags[0]
    marker = f"flag {first.device_id}#{first.device_seq}"
    made = _made(cart, code, marker)
    notes = {f.note for f in flags}
    if notes == {f"{decision}: {reason}"} and (
            decision != "correct" or (made is not None and made.quantity_after == corrected)):
        return ReviewOutcome(cart.session_id, first.device_id, first.device_seq, decision,
                             made, cart.flags)
    said = next(iter(notes)) or ""
    stored = said.split(":", 1)[0] if said.split(":", 1)[0] in DECISIONS else None
    if stored == "correct" and made is not None:
        stored = f"correct to {made.quantity_after}"
    how = f"as {stored} ({said!r})" if stored else f"with the note {said!r}"
    at = f" at {first.resolved_at.isoformat()}" if first.resolved_at else ""
    raise Conflict(f"{marker} was already resolved by staff {first.resolved_by}{at} {how}; "
                   f"a resolved flag is not decided again (the same decision, reason and "
                   f"quantity sent again answers with its outcome)")


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


def _quantity_of(contents: CartContents, code: str) -> int:
    """Units plus grams of ``code`` in a cart's contents."""
    weighed = contents.weighed.get(code)
    return contents.lines.get(code, 0) + (weighed.grams if weighed else 0)
