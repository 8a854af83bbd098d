"""The staffed checkout: where a person finishes every sale the exit could not.

A session the exit flow sent to staff (status ``staffed``, with the reason) is
worked by one staff member at a time: they claim it (the claim lapses after
``CLAIM_TTL`` without activity; another member gets Conflict meanwhile), see the
cart with its review flags, correct lines (a reason is required; every
correction is stored with the staff id, the time and the quantity before and
after), resolve flags, confirm the age check when the cart holds an
age-restricted product, take tenders (``storefront.till``) and close: a receipt
is issued and the session is settled in the cart's event log, which clears the
shopper's unpaid balance.

The cart is the event log's cart with the corrections applied on top, priced
with ``storefront.pricing.price_cart`` (totals are recomputed, never taken from
the client) on every request until the first tender is taken. That tender's
write transaction, which the staff claim serialises with corrections and
closes, prices the cart and freezes it (``FrozenCart``: lines, total and the
pricing time); from then on the sale is priced from the frozen cart, never from
the live catalogue, so a price change or a promotion ending at midnight between
payment and close cannot make it over- or underpaid. The age check is not frozen:
it is needed when the cart held an age-restricted product at the freeze or holds
one that is age-restricted in the catalogue now. Corrections are refused
while a tender has paid or reserves money (a wrong line is put right after the
close by a dispute, which refunds it, or before it by voiding the tenders); when
every tender ended without money (declined, failed, voided), a correction
un-freezes the cart in its own guarded transaction and the audit record of the
correction says so. Money is integer minor units.

A tender of a sale that is not closed can be voided (:meth:`StaffedCheckout.void_tender`,
reason required, audited as ``tender_voided``): cash goes back out of the drawer open
at its till (the X/Z reports count it as a cash void), a card tender is refunded
through the processor under the key ``void:<tender id>``. A voided tender no longer
pays, so the balance rises again and, once no tender pays, the lines unlock.

Money taken is audited (when an ``Audit`` is wired): each tender is recorded as
``tender`` by the request that took it, and a pending card tender that a resend
decides later as ``tender_settled``, each entry in the same database transaction as
the tender's write that owes it, so a stored tender outcome never lacks its entry
(see :meth:`StaffedCheckout.take_tender`).

Staff identity: ``staff_id`` is a string the caller states. It is recorded for
the audit but NOT authenticated (see the authentication issue).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cart.errors import SessionNotFound
from cart.projections import CartContents, CartFlag
from cart.service import SessionService
from storefront.catalog import Catalogue
from storefront.clock import Clock
from storefront.db.models import (
    AgeCheck,
    CartCorrection,
    FlagResolution,
    FrozenCart,
    Payment,
    Product,
    Receipt,
    ShoppingSession,
    StaffClaim,
    Tender,
)
from storefront.errors import Conflict, InvalidInput, NotFound, StorefrontError
from storefront.money import format_minor
from storefront.pricing import TaxPolicy, price_cart
from storefront.receipts import priced_receipt_lines
from storefront.security.audit import Audit, NewEntry
from storefront.security.errors import PermissionDenied
from storefront.sessions import SessionReadModel, SessionView
from storefront.shoppers import ShopperService, looks_like_card_number
from storefront.till import (
    PAID_STATES,
    PENDING_STATES,
    TenderKind,
    TenderRequest,
    TenderView,
    Till,
    tender_key,
    tender_view,
)

CLAIM_TTL = timedelta(minutes=10)
"""A claim with no activity for this long lapses and another staff member may take over."""
MAX_QUANTITY = 1_000_000  # units, or grams for goods sold by weight


@dataclass(frozen=True)
class ClaimView:
    """Who works the session and until when (UTC) the claim holds without activity."""

    session_id: str
    staff_id: str
    claimed_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class FlagView:
    """A review flag of the cart and, once resolved, by whom, when and how."""

    reason: str
    product_code: str | None
    device_id: str
    device_seq: int
    detail: str
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class CorrectionView:
    """One audited correction: ``quantity_before`` -> ``quantity_after`` (units or grams)."""

    id: str
    product_code: str
    quantity_before: int
    quantity_after: int
    reason: str
    staff_id: str
    corrected_at: datetime


@dataclass(frozen=True)
class FlagCorrection:
    """The correction a review decision makes to its flagged event's line, written by
    :meth:`StaffedCheckout.resolve_flag` in the resolution's guarded transaction.

    ``quantity``: units, or grams for goods sold by weight. ``reason`` names the flag
    (``... flag <device>#<seq>: ...``), which marks the correction as the decision's.
    ``exact``: the decision set this quantity (``correct``): a correction of the flag to
    another quantity is Conflict. Otherwise (``accept``, ``reject``) the quantity is the
    line as it stood plus or minus the event's effect, and ``basis`` the id of the
    product's last correction then (None: none); a line corrected since is Conflict.
    """

    product_code: str
    quantity: int
    reason: str
    exact: bool = False
    basis: str | None = None


@dataclass(frozen=True)
class StaffedCart:
    """Everything staff need to finish a sale; ``blockers`` say what still prevents closing.

    ``lines`` are priced lines (``storefront.pricing.PricedLine`` as dicts);
    ``total_minor`` is None while the cart cannot be priced (see ``issues``).
    ``frozen``: True once a tender froze the cart; ``priced_at`` is then when
    its prices and promotions were read (UTC), None while the cart is priced live.

    A settled session shows its sale as closed: ``lines`` and ``total_minor`` are its
    receipt's (``receipt_id``), never repriced; ``paid_minor`` is what was paid, the
    card capture at the exit (``paid_at_exit_minor``) plus the paid tenders; it has no
    blockers. ``history_erased``: the session's item history (its cart event log) was
    erased by account deletion or retention; only the kept accounting record is shown
    (no flags, corrections or age check). ``notice`` says so in words.
    """

    session_id: str
    shopper_id: str
    status: str
    reason: str | None
    currency: str
    claim: ClaimView | None
    lines: tuple[dict[str, object], ...]
    total_minor: int | None
    paid_minor: int
    balance_due_minor: int | None
    flags: tuple[FlagView, ...]
    corrections: tuple[CorrectionView, ...]
    issues: tuple[str, ...]
    age_check_required: bool
    age_checked_by: str | None
    age_checked_at: datetime | None
    tenders: tuple[TenderView, ...]
    blockers: tuple[str, ...]
    priced_at: datetime | None = None
    frozen: bool = False
    receipt_id: str | None = None
    paid_at_exit_minor: int = 0
    history_erased: bool = False
    notice: str | None = None


@dataclass(frozen=True)
class CloseResult:
    """A closed staffed sale: the receipt, what was paid and the change given (minor units)."""

    session_id: str
    receipt_id: str
    total_minor: int
    currency: str
    paid_minor: int
    change_minor: int


@dataclass(frozen=True)
class _Priced:
    """A priced cart: lines as dicts, total in minor units, when it was priced, and
    whether it is the frozen cart of a sale that took a tender."""

    lines: tuple[dict[str, object], ...]
    total_minor: int
    priced_at: datetime
    frozen: bool = False


@dataclass
class _State:
    contents: CartContents
    quantities: dict[str, int]
    issues: dict[str, str] = field(default_factory=dict)
    priced: _Priced | None = None
    age_restricted: bool = False
    corrections: int = 0


class StaffedCheckout:
    """The staffed-checkout service: queue, claims, corrections, age checks, tenders, close."""

    def __init__(self, *, sessions: sessionmaker[Session], carts: SessionService,
                 catalogue: Catalogue, read_model: SessionReadModel, shoppers: ShopperService,
                 till: Till, currency: str, tax: TaxPolicy, clock: Clock,
                 claim_ttl: timedelta = CLAIM_TTL, audit: Audit | None = None) -> None:
        self._db = sessions
        self._audit = audit
        self._carts = carts
        self._catalogue = catalogue
        self._read_model = read_model
        self._shoppers = shoppers
        self._till = till
        self._currency = currency
        self._tax = tax
        self._clock = clock
        self._ttl = claim_ttl

    # --- queue and claims --------------------------------------------------------------

    def queue(self) -> list[tuple[SessionView, ClaimView | None]]:
        """Sessions waiting for staff, oldest exit first, each with its live claim (or None)."""
        views = self._read_model.with_status("staffed")
        now = self._clock()
        with self._db() as db:
            claims = {c.session_id: _claim_view(c) for c in db.scalars(
                sa.select(StaffClaim).where(StaffClaim.expires_at > now))}
        return [(view, claims.get(view.id)) for view in views]

    def claim(self, *, session_id: str, staff_id: str) -> ClaimView:
        """Claim the session for ``staff_id`` (renews an own claim).

        Raises NotFound (also for a session of another store: every staffed-checkout
        step needs this claim first), Conflict (not at the staffed checkout, or claimed by
        another staff member whose claim has not lapsed).
        """
        self._read_model.require_in_store(session_id)
        self._staffed(session_id)
        now = self._clock()
        row = StaffClaim
        with self._db.begin() as db:
            taken = db.execute(sa.update(row).where(
                row.session_id == session_id,
                sa.or_(row.staff_id == staff_id, row.expires_at <= now))
                .values(staff_id=staff_id, claimed_at=now, expires_at=now + self._ttl))
            if int(taken.rowcount or 0) == 1:  # type: ignore[attr-defined]
                return _claim_view(db.get_one(row, session_id))
        try:
            with self._db.begin() as db:
                claim = row(session_id=session_id, staff_id=staff_id, claimed_at=now,
                            expires_at=now + self._ttl)
                db.add(claim)
            return _claim_view(claim)
        except IntegrityError:
            with self._db() as db:
                holder = db.get(row, session_id)
            raise Conflict(_claimed_by(session_id, holder)) from None

    def release(self, *, session_id: str, staff_id: str) -> None:
        """Give the claim up. Raises NotFound (no such session) and Conflict when
        ``staff_id`` does not hold the claim."""
        with self._db.begin() as db:
            self._guard(session_id, staff_id)(db)
            db.execute(sa.delete(StaffClaim).where(StaffClaim.session_id == session_id))

    # --- the cart ------------------------------------------------------------------------

    def cart(self, session_id: str) -> StaffedCart:
        """The session's cart as staff see it. Raises NotFound.

        A settled session is shown as its receipt and what was paid (see
        ``StaffedCart``), also when its item history was erased.
        """
        view = self._read_model.get(session_id)
        if view.status == "settled":
            closed = self._settled_cart(view)
            if closed is not None:
                return closed
        state = self._state(session_id)
        with self._db() as db:
            claim = db.get(StaffClaim, session_id)
            live = _claim_view(claim) if claim and claim.expires_at > self._clock() else None
            age = db.get(AgeCheck, session_id)
            corrections = tuple(_correction_view(c) for c in _corrections(db, session_id))
            flags = tuple(_flag_views(db, session_id, state.contents.flags))
        tenders = tuple(self._till.tenders(session_id))
        paid = sum(t.amount_minor for t in tenders if t.state in PAID_STATES)
        priced = state.priced
        total = priced.total_minor if priced is not None else None
        blockers = _blockers(state, flags, age is not None, tenders, paid, self._currency)
        return StaffedCart(
            session_id, view.shopper_id, view.status, view.staffed_reason, self._currency, live,
            priced.lines if priced else (), total, paid,
            None if total is None else total - paid, flags, corrections,
            tuple(state.issues.values()), state.age_restricted,
            age.staff_id if age else None, age.checked_at if age else None, tenders, blockers,
            priced.priced_at if priced and priced.frozen else None,
            priced.frozen if priced else False)

    def _settled_cart(self, view: SessionView) -> StaffedCart | None:
        """The closed sale of the settled session ``view``: its receipt's lines and total
        (never repriced), what was paid (the exit's card capture plus paid tenders, minor
        units) and no blockers; None when it has no receipt (the live view is shown).

        When the item history (the cart event log) was erased (account deletion or
        retention), only the kept accounting record is shown: no flags, corrections or
        age check, and ``notice`` says that the history was erased.
        """
        try:
            contents: CartContents | None = self._carts.cart(view.id)
        except SessionNotFound:
            contents = None  # erased: the session row and its receipt are kept
        with self._db() as db:
            receipt = db.scalars(sa.select(Receipt)
                                 .where(Receipt.session_id == view.id)).one_or_none()
            if receipt is None:
                return None
            captured = db.execute(sa.select(Payment.captured_minor, Payment.amount_minor)
                                  .where(Payment.session_id == view.id,
                                         Payment.state == "captured")).all()
            at_exit = sum(int(c if c is not None else a) for c, a in captured)
            frozen = db.get(FrozenCart, view.id)
            claim = db.get(StaffClaim, view.id)
            live = _claim_view(claim) if claim and claim.expires_at > self._clock() else None
            erased = contents is None
            age = None if erased else db.get(AgeCheck, view.id)
            corrections = () if erased else tuple(
                _correction_view(c) for c in _corrections(db, view.id))
            flags = () if contents is None else tuple(
                _flag_views(db, view.id, contents.flags))
            lines = tuple(dict(line) for line in receipt.lines)
            total, currency, receipt_id = receipt.total_minor, receipt.currency, receipt.id
            priced_at = frozen.priced_at if frozen is not None else receipt.issued_at
            age_required = not erased and (age is not None or bool(
                frozen is not None and frozen.age_restricted))
        tenders = tuple(self._till.tenders(view.id))
        paid = at_exit + sum(t.amount_minor for t in tenders if t.state in PAID_STATES)
        issues = () if paid == total else (
            f"paid {format_minor(paid, currency)} against the receipt's total of "
            f"{format_minor(total, currency)}: check the payments",)
        notice = (f"settled: the sale is closed; lines and total as on receipt {receipt_id}"
                  if not erased else
                  f"settled: the item history of this session was erased (account deletion "
                  f"or retention); shown is the kept accounting record: status, totals, "
                  f"receipt {receipt_id} and payments")
        return StaffedCart(
            view.id, view.shopper_id, view.status, view.staffed_reason, currency, live,
            lines, total, paid, total - paid, flags, corrections, issues, age_required,
            age.staff_id if age else None, age.checked_at if age else None, tenders, (),
            priced_at, True, receipt_id, at_exit, erased, notice)

    def correct(self, *, session_id: str, staff_id: str, product_code: str, quantity: int,
                reason: str, max_change: int | None = None) -> CorrectionView:
        """Set the quantity of ``product_code`` (0 removes it, a new code adds it), audited.

        ``quantity`` is units, or grams for goods sold by weight. The quantity
        before, the limit and the lock are read in the correction's own guarded
        transaction (the claim row serialises it with tenders and other
        corrections of the session). A cart frozen by tenders that all ended
        without money is un-frozen here, and the audit record says so
        (``unfrozen_total_minor``). The ``correction`` audit entry is written in
        that same transaction, so the correction and its entry are stored both or
        neither: if the audit write fails, its error is raised and nothing of the
        correction is kept (the cart stays as it was; send it again).

        Raises InvalidInput (no reason, quantity out of range or unchanged),
        UnknownProduct, NotFound, Conflict (no claim; a tender has paid or
        reserves money: the lines are locked; the audit log stayed contended),
        PermissionDenied (the change, added to the session's earlier corrections,
        exceeds ``max_change``, the role's limit: splitting a change into several
        corrections, or sending them in parallel, does not get round it), and a
        database error of the audit write (the correction rolled back with it).
        """
        reason = _text("reason", reason)
        _check_quantity(quantity)
        self._staffed(session_id)
        self._catalogue.get(product_code)
        with self._db.begin() as db:
            self._guard(session_id, staff_id)(db)
            row = self._write_correction(db, session_id, staff_id, product_code, quantity,
                                         reason, max_change)
        return _correction_view(row)

    def _write_correction(self, db: Session, session_id: str, staff_id: str,
                          product_code: str, quantity: int, reason: str,
                          max_change: int | None) -> CartCorrection:
        """The body of :meth:`correct`, inside a transaction ``db`` that passed the guard
        (also :meth:`resolve_flag`'s, which writes a review decision's correction)."""
        unfrozen = self._unfreeze(db, session_id)
        state = self._state(session_id, db, price=False)
        before = state.quantities.get(product_code, 0)
        if before == quantity and product_code not in state.issues:
            raise InvalidInput(f"{product_code} already has quantity {quantity}")
        if max_change is not None:
            self._check_change_limit(db, session_id, product_code, before, quantity,
                                     max_change)
        row = CartCorrection(id=f"cor_{uuid.uuid4().hex}", session_id=session_id,
                             staff_id=staff_id, product_code=product_code,
                             quantity_before=before, quantity_after=quantity,
                             reason=reason, corrected_at=self._clock())
        db.add(row)
        db.flush()
        self._audit_correction(db, row, unfrozen)
        return row

    def _audit_correction(self, db: Session, row: CartCorrection,
                          unfrozen: int | None) -> None:
        """Append the ``correction`` entry of ``row`` in the correction's own transaction
        ``db`` (errors of :meth:`Audit.record_in`); ``unfrozen`` is the total (minor
        units) of the frozen cart the correction dropped, if any."""
        if self._audit is None:
            return
        details: dict[str, object] = {"correction_id": row.id, "product_code": row.product_code,
                                      "before": row.quantity_before,
                                      "after": row.quantity_after, "reason": row.reason}
        if unfrozen is not None:
            details["unfrozen_total_minor"] = unfrozen
        self._audit.record_in(db, [NewEntry(f"staff:{row.staff_id}", "correction",
                                            f"session:{row.session_id}", details)])

    def _unfreeze(self, db: Session, session_id: str) -> int | None:
        """Inside a correction's guarded transaction: refuse while a tender has paid or
        reserves money; else drop the frozen cart, if any. Returns its total (minor
        units) when one was dropped. Raises Conflict (the lines are locked)."""
        frozen = db.get(FrozenCart, session_id)
        if self._till.has_tenders(db, session_id, PAID_STATES + PENDING_STATES):
            total = "" if frozen is None else (
                f" at {format_minor(frozen.total_minor, frozen.currency)}, priced "
                f"{frozen.priced_at.isoformat()}")
            raise Conflict(f"tenders have been taken: the lines are locked{total}; void "
                           f"the tenders first (a manager: Void tender on the console's session "
                           f"page, or POST .../tenders/<id>/void), or "
                           f"refund a wrong line by a dispute of the receipt after the close")
        if frozen is None:
            return None
        db.delete(frozen)
        db.flush()
        return frozen.total_minor

    def _check_change_limit(self, db: Session, session_id: str, code: str, before: int,
                            after: int, limit: int) -> None:
        """PermissionDenied when this correction of ``code`` (``before`` -> ``after``)
        plus the session's earlier corrections change more than ``limit`` items; run
        inside the correction's guarded transaction. A line of goods sold by weight
        counts as one item per correction whatever its grams (a cashier weighs the
        apples, they do not add 450 of them); other lines count their units."""
        rows = db.execute(sa.select(CartCorrection.product_code, CartCorrection.quantity_before,
                                    CartCorrection.quantity_after)
                          .where(CartCorrection.session_id == session_id)).all()
        weighed = {c for c, item in self._catalogue.find_many({code, *(r[0] for r in rows)}).items()
                   if item.sold_by_weight}

        def items(product: str, old: int, new: int) -> int:
            return int(old != new) if product in weighed else abs(new - old)

        change = items(code, before, after)
        earlier = sum(items(*row) for row in rows)
        if change + earlier > limit:
            already = f" (with {earlier} corrected on this session before)" if earlier else ""
            raise PermissionDenied(f"a change of {change} item(s){already} is over your "
                                   f"limit of {limit}: ask a manager")

    def resolve_flag(self, *, session_id: str, staff_id: str, device_id: str, device_seq: int,
                     note: str, correction: FlagCorrection | None = None,
                     max_change: int | None = None) -> list[FlagView]:
        """Resolve the review flags of one device event; returns all flags.

        ``correction``: the decision's effect on the lines
        (``storefront.review.ReviewQueue.decide``), written in the resolution's guarded
        transaction, so the check that the flag is unresolved, the correction (with its
        audit entry, the limit ``max_change`` and the lock as in :meth:`correct`) and the
        resolution are one write that the claim row serialises: of two racing decisions
        of one flag exactly one changes the cart. A correction already made for the flag
        (its reason names ``flag <device>#<seq>``) is not made again.

        The same note again is a replay (nothing changes; a flag of the event not
        resolved yet is resolved with it); another note when every flag of the event is
        already resolved is Conflict, and so is the same note with an ``exact``
        correction to another quantity than the flag's (a retry with another count).

        Raises InvalidInput (no note, bad quantity, the line already has the quantity),
        UnknownProduct, NotFound (no such session or flag), Conflict (no claim; resolved
        otherwise; the line was corrected since the decision's quantity was worked out;
        tenders were taken), PermissionDenied (over ``max_change``).
        """
        note = _text("note", note)
        if correction is not None:
            _text("reason", correction.reason)
            _check_quantity(correction.quantity)
            self._catalogue.get(correction.product_code)
        self._staffed(session_id)
        flags = [f for f in self._state(session_id, price=False).contents.flags
                 if (f.device_id, f.device_seq) == (device_id, device_seq)]
        if not flags:
            raise NotFound(f"no review flag for device event {device_id}#{device_seq}")
        marker = f"flag {device_id}#{device_seq}"
        with self._db.begin() as db:
            self._guard(session_id, staff_id)(db)
            rows = [db.get(FlagResolution, (session_id, device_id, device_seq, str(f.reason)))
                    for f in flags]
            done = [r for r in rows if r is not None]
            if len(done) == len(rows) and note not in {r.note for r in done}:
                raise Conflict(f"{marker} was already resolved by staff "
                               f"{done[0].staff_id} with the note {done[0].note!r}")
            if correction is not None:
                self._flag_correction(db, session_id, staff_id, marker, correction,
                                      max_change, resolved=done[0] if len(done) == len(rows)
                                      else None)
            for flag, row in zip(flags, rows, strict=True):
                if row is None:
                    db.add(FlagResolution(session_id=session_id, device_id=device_id,
                                          device_seq=device_seq, reason=str(flag.reason),
                                          staff_id=staff_id, note=note,
                                          resolved_at=self._clock()))
        return list(self.cart(session_id).flags)

    def _flag_correction(self, db: Session, session_id: str, staff_id: str, marker: str,
                         correction: FlagCorrection, max_change: int | None,
                         resolved: FlagResolution | None) -> None:
        """In :meth:`resolve_flag`'s guarded transaction: write ``correction`` unless the
        flag (``marker``) already has one; Conflict when that one has another quantity
        and ``correction`` is exact, or when a relative correction's line was corrected
        since its ``basis``. ``resolved``: the flag's resolution when it is resolved with
        this note (a replay: nothing is written)."""
        code = correction.product_code
        mine = [c for c in _corrections(db, session_id) if c.product_code == code]
        made = next((c for c in reversed(mine) if f" {marker}:" in c.reason), None)
        if made is not None or resolved is not None:
            if correction.exact and (made is None or made.quantity_after != correction.quantity):
                who = f"resolved by staff {resolved.staff_id}" if resolved else "decided"
                to = f" to {made.quantity_after}" if made else " without a correction"
                raise Conflict(f"{marker} was already {who} with a correction of {code}{to}; "
                               f"a resolved flag is not decided again")
            return
        if not correction.exact and (mine[-1].id if mine else None) != correction.basis:
            raise Conflict(f"the line of {code} was corrected while {marker} was decided; "
                           f"look at the cart again")
        self._write_correction(db, session_id, staff_id, code, correction.quantity,
                               correction.reason, max_change)

    def confirm_age(self, *, session_id: str, staff_id: str) -> tuple[str, datetime]:
        """Record that ``staff_id`` checked the shopper's age now; the first check is kept.

        Returns (staff id, time) of the recorded check. Raises NotFound, Conflict (no claim).
        """
        self._staffed(session_id)
        with self._db.begin() as db:
            self._guard(session_id, staff_id)(db)
            row = db.get(AgeCheck, session_id)
            if row is None:
                row = AgeCheck(session_id=session_id, staff_id=staff_id,
                               checked_at=self._clock())
                db.add(row)
            return row.staff_id, row.checked_at

    # --- payment and close ---------------------------------------------------------------

    def take_tender(self, *, session_id: str, staff_id: str, kind: TenderKind, key: str,
                    till_id: str, amount_minor: int,
                    payment_token: str | None = None) -> tuple[TenderView, int]:
        """Take one tender (see ``Till.take``); returns it and the balance still due.

        A new card tender without ``payment_token`` is the shopper's card on file.
        A request with the key of a stored tender replays it, and resumes it when
        it is pending (a lost answer, a crash in mid-call): the processor is asked
        what became of its call, so the money it took is never lost. A resume is
        finished on the card the tender was started with: with no token it uses
        that card (not the card on file), with another token it is refused. A new tender is
        priced inside its guarded transaction; the first one freezes the cart
        (see the module docstring). Amounts in minor units.

        Once the sale is closed (the session settled, also by a close that finishes
        while this request runs), a replay of a stored tender (cash or card: the same
        key, kind, amount and till, and no card or the same card) returns the stored
        tender and the balance, as it did before the close; it needs no claim, and
        nothing is charged or written.

        Audit (when wired), actor ``staff:<staff_id>``, subject ``session:<id>``
        (as corrections): the request that takes a new tender records one ``tender``
        entry with the outcome it reached (``approved``, ``declined`` or ``pending``;
        details: tender id, method, amount, currency, till, for cash the drawer, cash
        handed over and change, for a card the processor's authorization and capture
        ids, never card data; ``storefront.till.audit_details``). A resend that
        decides a pending tender records ``tender_settled`` (captured or failed, as
        reconciliation does); a replay that decides nothing records nothing. The
        entry is written in the transaction of the tender's write that owes it (a
        cash tender's insert, a card tender's outcome), so both are stored or
        neither: if the audit log fails, its error is raised and the write rolled
        back. A cash tender is then not stored (sending it again with its key takes
        it, audited); a card tender stays pending as it was before that write
        (sending it again looks the processor's call up and records the outcome as
        ``tender_settled``; reconciliation does the same), so money the processor
        took is never stored without its entry. Only a new tender whose last write
        lost to another request of it (which recorded its own outcome) has its
        ``tender`` entry written on its own afterwards.

        Raises InvalidInput (bad amount, card above the balance, a card number as
        token), NotFound, Conflict (no claim; the cart is not ready: flags,
        issues, age check; another card tender is pending: send that one again
        with its key first; the key was used with other content or another card,
        with what it was used for; a new tender on a closed sale; the audit log
        stayed contended: the tender's write is rolled back, send it again), and a
        database error of the audit write (likewise rolled back).
        """
        if payment_token is not None and looks_like_card_number(payment_token):
            raise InvalidInput("payment token must be a processor token, not a card number")
        view = self._read_model.get(session_id)
        if view.status == "settled":
            return self._replay_closed(view, TenderRequest(
                session_id, staff_id, kind, key, till_id, amount_minor, self._currency,
                payment_token))
        _at_staffed_checkout(view)
        stored = self._till.find(session_id, key)
        # Charged only by a new tender naming no card (or one stored before tenders
        # recorded their card); a resumed tender keeps the card it was started with.
        card_on_file = self._shoppers.payment_token(view.shopper_id) \
            if kind == "card" and payment_token is None else None
        if stored is None:
            cart = self.cart(session_id)
            cart_blockers = [b for b in cart.blockers if not b.startswith(_BALANCE)]
            if cart.total_minor is None or cart_blockers:
                raise Conflict("the cart is not ready for payment: " + "; ".join(cart_blockers))
        request = TenderRequest(session_id, staff_id, kind, key, till_id, amount_minor,
                                self._currency, payment_token, card_on_file)
        try:
            taken = self._till.take(request, total=self._sale_total(session_id, staff_id, key),
                                    guard=self._guard(session_id, staff_id), audit=self._audit)
        except Conflict:
            view = self._read_model.get(session_id)
            if view.status == "settled":  # a close finished first (and dropped the claim)
                return self._replay_closed(view, request)
            raise
        return taken.tender, taken.balance_minor

    def _replay_closed(self, view: SessionView,
                       request: TenderRequest) -> tuple[TenderView, int]:
        """A tender request on a settled session: the stored tender it replays and the
        balance (the receipt's total minus what the tenders paid, minor units).

        Raises Conflict when no tender is stored under the key (a closed sale takes no
        new tender) or the key was used with other content (``Till.replay``).
        """
        stored = self._till.replay(request)
        if stored is None:
            raise Conflict(f"session {view.id} is settled: the sale is closed and takes no "
                           f"new tender (no tender was taken with key {request.key!r})")
        closed = self._closed(view)
        return stored, closed.total_minor - closed.paid_minor

    def void_tender(self, *, session_id: str, staff_id: str, tender_id: str, reason: str,
                    supervisor: bool = False) -> tuple[TenderView, int | None]:
        """Void a tender of a sale that is not closed (see ``Till.void_tender``): a cash
        tender's cash (tendered minus change) goes back out of the drawer open at its
        till, a captured card tender is refunded through the processor under the key
        ``void:<tender id>``. Returns the tender and the balance still due (minor units;
        None while the cart cannot be priced).

        The void is written in a transaction guarded by ``staff_id``'s claim, like
        corrections, and audited as ``tender_voided`` (reason required; actor
        ``staff:<staff_id>``). ``supervisor`` (the API sets it for a manager, the only
        role it lets void): the claim may be held by the cashier working the session
        instead, so a manager voids at the cashier's till without taking the claim. A voided tender
        no longer pays: the sale's paid amount drops by it and the balance rises; once
        no tender has paid or reserves money, a correction unlocks the lines again (see
        :meth:`correct`). Close still needs the balance paid. Idempotent: a tender
        already voided is returned unchanged (also with another reason, and with no
        claim); a card void whose refund outcome is unknown is finished by sending the
        same void again, never refunding twice.

        Raises InvalidInput (no reason), NotFound (no such session, or no such tender
        in it), Conflict (not at the staffed checkout or closed; no claim; the tender is
        a pending card tender or took no money; no drawer open at a cash tender's till;
        the audit log stayed contended), PaymentPending (the refund's outcome is still
        unknown: send the void again), PaymentError (the processor refused the refund:
        the tender stays paid), and a database error of the audit write (the void
        rolled back with it).
        """
        reason = _text("reason", reason)
        view = self._read_model.get(session_id)
        stored = next((t for t in self._till.tenders(session_id) if t.id == tender_id), None)
        if stored is None:
            raise NotFound(f"no tender {tender_id!r} in session {session_id}")
        if stored.void_state == "voided":
            return stored, self._balance(session_id)
        _at_staffed_checkout(view)
        voided = self._till.void_tender(session_id=session_id, tender_id=tender_id,
                                        staff_id=staff_id, reason=reason,
                                        guard=(self._supervised_guard if supervisor
                                               else self._guard)(session_id, staff_id),
                                        audit=self._audit)
        return voided, self._balance(session_id)

    def _balance(self, session_id: str) -> int | None:
        """The balance due (minor units; None while the cart cannot be priced)."""
        return self.cart(session_id).balance_due_minor

    def _sale_total(self, session_id: str, staff_id: str,
                    key: str) -> Callable[[Session], int]:
        """The sale's total (minor units), read inside the tender's guarded transaction.

        The frozen cart's total once there is one. Otherwise the cart is priced
        there and, for a new tender, frozen in the same transaction (a request that
        fails rolls the freeze back with it). Raises Conflict when another card
        tender is pending, or the cart is not ready (issues, age check).
        """
        stored_key = tender_key(session_id, key)

        def total(db: Session) -> int:
            pending = db.scalars(sa.select(Tender).where(
                Tender.session_id == session_id, Tender.state.in_(PENDING_STATES),
                Tender.idempotency_key != stored_key)).first()
            if pending is not None:
                raise Conflict(_pending_blocker(pending.id, tender_view(pending).key)
                               + " before taking another tender")
            frozen = db.get(FrozenCart, session_id)
            if frozen is not None:
                return frozen.total_minor
            state, priced = self._ready_state(db, session_id)
            if db.scalars(sa.select(Tender.id)
                          .where(Tender.idempotency_key == stored_key)).first() is None:
                db.add(FrozenCart(session_id=session_id, currency=self._currency,
                                  total_minor=priced.total_minor, lines=list(priced.lines),
                                  age_restricted=state.age_restricted,
                                  corrections=state.corrections, priced_at=priced.priced_at,
                                  frozen_by=staff_id))
                db.flush()
            return priced.total_minor
        return total

    def _ready_state(self, db: Session, session_id: str) -> tuple[_State, _Priced]:
        """The cart and its pricing, read inside ``db``'s transaction; Conflict unless
        it may be paid (no issues, priced, the age checked when it holds an
        age-restricted product)."""
        state = self._state(session_id, db)
        problems = list(state.issues.values())
        if state.age_restricted and db.get(AgeCheck, session_id) is None:
            problems.append(_AGE)
        if state.priced is None or problems:
            raise Conflict("the cart is not ready for payment: " + "; ".join(problems))
        return state, state.priced

    def close(self, *, session_id: str, staff_id: str) -> CloseResult:
        """Issue the receipt and settle the session; a retry after closing returns the result.

        Concurrent closes of one session all answer with the one receipt. The cart
        is read again inside the guarded transaction that issues the receipt.

        Raises NotFound, Conflict (no claim, or ``blockers``: balance due,
        unresolved flags, missing age check, pending card tender; the cart
        changed while closing).
        """
        view = self._read_model.get(session_id)
        if view.status == "settled":
            return self._closed(view)
        try:
            return self._close(view, staff_id)
        except Conflict:
            view = self._read_model.get(session_id)
            if view.status == "settled":  # a concurrent close finished first
                return self._closed(view)
            raise

    def _close(self, view: SessionView, staff_id: str) -> CloseResult:
        session_id = view.id
        cart = self.cart(session_id)
        if view.status != "staffed":
            raise Conflict(f"session {session_id} is {view.status}, not at the staffed checkout")
        with self._db.begin() as db:
            self._guard(session_id, staff_id)(db)  # another's claim is said first
            if cart.blockers or cart.total_minor is None:
                raise Conflict("cannot close: " + "; ".join(cart.blockers))
            state = self._state(session_id, db)
            if state.age_restricted and db.get(AgeCheck, session_id) is None:
                raise Conflict("cannot close: " + _AGE)
            current = state.priced
            if current is None or (current.total_minor, current.lines) != (cart.total_minor,
                                                                           cart.lines):
                raise Conflict("cannot close: the cart changed while closing; look at it again")
            paid = sum(db.scalars(sa.select(Tender.amount_minor).where(
                Tender.session_id == session_id, Tender.state.in_(PAID_STATES),
                Tender.void_state.is_(None))))
            if paid != cart.paid_minor:  # a void started since the cart was read
                raise Conflict("cannot close: the tenders changed while closing (a void); "
                               "look at it again")
            receipt = db.scalars(sa.select(Receipt)
                                 .where(Receipt.session_id == session_id)).one_or_none()
            if receipt is None:
                receipt = Receipt(id=f"rct_{uuid.uuid4().hex}", session_id=session_id,
                                  shopper_id=view.shopper_id, total_minor=cart.total_minor,
                                  currency=self._currency, lines=list(cart.lines),
                                  issued_at=self._clock())
                db.add(receipt)
            receipt_id, total = receipt.id, receipt.total_minor
        self._carts.settle_once(session_id, receipt_id, total)
        self._read_model.update(session_id, status="settled", total_minor=total)
        with self._db.begin() as db:
            db.execute(sa.delete(StaffClaim).where(StaffClaim.session_id == session_id))
        return self._closed(self._read_model.get(session_id))

    # --- internals -----------------------------------------------------------------------

    def _closed(self, view: SessionView) -> CloseResult:
        with self._db() as db:
            receipt = db.scalars(sa.select(Receipt).where(Receipt.session_id == view.id)).one()
        tenders = [t for t in self._till.tenders(view.id) if t.state in PAID_STATES]
        return CloseResult(view.id, receipt.id, receipt.total_minor, receipt.currency,
                           sum(t.amount_minor for t in tenders),
                           sum(t.change_minor for t in tenders))

    def _staffed(self, session_id: str) -> SessionView:
        return _at_staffed_checkout(self._read_model.get(session_id))

    def _guard(self, session_id: str, staff_id: str) -> Callable[[Session], None]:
        """A check, run inside a write transaction, that ``staff_id`` holds a live claim.

        It renews the claim with an UPDATE, which also locks the claim row, so
        writes of one session are serialised. Without a live claim it raises NotFound
        for an unknown session (looked up only then), else Conflict.
        """
        def guard(db: Session) -> None:
            now = self._clock()
            row = StaffClaim
            renewed = db.execute(sa.update(row).where(
                row.session_id == session_id, row.staff_id == staff_id, row.expires_at > now)
                .values(expires_at=now + self._ttl))
            if int(renewed.rowcount or 0) != 1:  # type: ignore[attr-defined]
                holder = db.get(row, session_id)
                if holder is not None and holder.expires_at > now:
                    raise Conflict(_claimed_by(session_id, holder))
                if db.get(ShoppingSession, session_id) is None:
                    raise NotFound(f"shopping session {session_id!r} does not exist")
                raise Conflict(f"staff {staff_id} must claim session {session_id} first")
        return guard

    def _supervised_guard(self, session_id: str, staff_id: str) -> Callable[[Session], None]:
        """As :meth:`_guard`, for a supervisor (a manager's void): the session needs a live
        claim, held by ``staff_id`` or by the cashier working it; the claim is renewed
        (and its row locked, serialising the session's writes) for its holder."""
        def guard(db: Session) -> None:
            now = self._clock()
            row = StaffClaim
            renewed = db.execute(sa.update(row).where(
                row.session_id == session_id, row.expires_at > now)
                .values(expires_at=now + self._ttl))
            if int(renewed.rowcount or 0) != 1:  # type: ignore[attr-defined]
                if db.get(ShoppingSession, session_id) is None:
                    raise NotFound(f"shopping session {session_id!r} does not exist")
                raise Conflict(f"session {session_id} must be claimed first (by {staff_id} "
                               f"or the cashier working it)")
        return guard

    def _state(self, session_id: str, db: Session | None = None, *,
               price: bool = True) -> _State:
        """The cart: the event log's lines with the corrections on top, priced.

        ``db``: read the corrections and the frozen cart inside that session's
        transaction (else a fresh one). A frozen cart is taken as it stands;
        otherwise the cart is priced now from the catalogue (``price`` False:
        quantities and issues only).
        """
        try:
            contents = self._carts.cart(session_id)
        except SessionNotFound as exc:
            raise NotFound(f"shopping session {session_id!r} does not exist") from exc
        with self._reading(db) as reader:
            frozen = reader.get(FrozenCart, session_id)
            corrections = [(c.product_code, c.quantity_after)
                           for c in _corrections(reader, session_id)]
            if frozen is not None:
                state = _frozen_state(contents, frozen)
                # Prices stay frozen; the age restriction does not: a product marked
                # age-restricted after the first tender still needs the check.
                state.age_restricted = frozen.age_restricted or _any_age_restricted(
                    reader, state.quantities)
                return state
        state = _State(contents, dict(contents.lines), corrections=len(corrections))
        self._weighed(state)
        for code, quantity in corrections:
            state.quantities[code] = quantity
            state.issues.pop(code, None)
        state.quantities = {c: q for c, q in state.quantities.items() if q > 0}
        if state.issues or not price:
            return state
        now = self._clock()
        try:
            items = self._catalogue.get_many(state.quantities)
            state.age_restricted = any(getattr(i, "age_restricted", False) for i in items.values())
            priced = price_cart(state.quantities, self._catalogue, self._currency,
                                tax=self._tax, on=now.date(), items=items) \
                if state.quantities else None
            state.priced = _Priced(
                priced_receipt_lines(priced) if priced else (),
                priced.total_minor if priced else 0, now)
        except StorefrontError as exc:
            state.issues["*"] = f"cart cannot be priced: {exc.reason}"
        return state

    @contextmanager
    def _reading(self, db: Session | None) -> Iterator[Session]:
        if db is not None:
            yield db
            return
        with self._db() as fresh:
            yield fresh

    def _weighed(self, state: _State) -> None:
        """Weighed goods priced per kg join the quantities; others need a correction.

        So does a product sold by weight that was counted in units, not weighed:
        pricing would read its units as grams, so staff correct it with its weight
        (grams). Unknown products are left to pricing, which names them.
        """
        weighed = state.contents.weighed
        items = self._catalogue.find_many({*state.quantities, *weighed})
        for code, units in state.quantities.items():
            item = items.get(code)
            if item is not None and item.sold_by_weight and code not in weighed:
                state.issues[code] = (f"weighed item {code} was counted in units ({units}), "
                                      f"not weighed: needs a correction with its weight "
                                      f"in grams")
        for code, line in weighed.items():
            item = items.get(code)
            if item is None or line.label_price_minor is not None or not item.sold_by_weight \
                    or code in state.quantities:
                state.issues[code] = (f"weighed item {code} ({line.grams} g) needs a "
                                      f"correction with its quantity")
            else:
                state.quantities[code] = line.grams


_BALANCE = "balance due"
_AGE = "age check required: the cart holds an age-restricted product"


def _frozen_state(contents: CartContents, frozen: FrozenCart) -> _State:
    """The state of a cart frozen by a tender: its lines and total as priced then."""
    lines = tuple(dict(line) for line in frozen.lines)
    quantities = {str(line["code"]): int(line["quantity"]) for line in lines}
    return _State(contents, quantities, {},
                  _Priced(lines, frozen.total_minor, frozen.priced_at, frozen=True),
                  frozen.age_restricted, frozen.corrections)


def _any_age_restricted(db: Session, codes: Iterable[str]) -> bool:
    """True when one of ``codes`` is age-restricted in the catalogue now (read in ``db``)."""
    wanted = sorted(set(codes))
    return bool(wanted) and db.scalars(sa.select(Product.code).where(
        Product.code.in_(wanted), Product.age_restricted.is_(True)).limit(1)).first() is not None


def _pending_blocker(tender_id: str, key: str | None) -> str:
    return (f"card tender {tender_id} is pending: send it again with its key {key!r} "
            f"to finish it")


def _blockers(state: _State, flags: tuple[FlagView, ...], age_checked: bool,
              tenders: tuple[TenderView, ...], paid: int, currency: str) -> tuple[str, ...]:
    out = list(state.issues.values())
    out += [f"unresolved flag {f.reason} on {f.device_id}#{f.device_seq}"
            for f in flags if f.resolved_by is None]
    if state.age_restricted and not age_checked:
        out.append(_AGE)
    out += [_pending_blocker(t.id, t.key) for t in tenders if t.state in PENDING_STATES]
    out += [f"the void of tender {t.id} is unfinished: send the void again to finish it"
            for t in tenders if t.void_state == "voiding"]
    if state.priced is not None:
        due = state.priced.total_minor - paid
        if due > 0:
            out.append(f"{_BALANCE} {format_minor(due, currency)}")
        elif due < 0:
            out.append(f"overpaid by {format_minor(-due, currency)}: the cart changed after "
                       f"payment")
    return tuple(out)


def _check_quantity(quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) \
            or not 0 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(f"quantity must be an integer from 0 to {MAX_QUANTITY}")


def _text(what: str, value: str) -> str:
    text = (value or "").strip()
    if not 1 <= len(text) <= 300:
        raise InvalidInput(f"a {what} is required (1-300 characters)")
    return text


def _claimed_by(session_id: str, holder: StaffClaim | None) -> str:
    if holder is None:
        return f"session {session_id} is being claimed by someone else; retry"
    return (f"session {session_id} is claimed by staff {holder.staff_id} until "
            f"{holder.expires_at.isoformat()}")


def _claim_view(row: StaffClaim) -> ClaimView:
    return ClaimView(row.session_id, row.staff_id, row.claimed_at, row.expires_at)


def _corrections(db: Session, session_id: str) -> list[CartCorrection]:
    return list(db.scalars(sa.select(CartCorrection)
                           .where(CartCorrection.session_id == session_id)
                           .order_by(CartCorrection.corrected_at, CartCorrection.id)))


def _correction_view(row: CartCorrection) -> CorrectionView:
    return CorrectionView(row.id, row.product_code, row.quantity_before, row.quantity_after,
                          row.reason, row.staff_id, row.corrected_at)


def _flag_views(db: Session, session_id: str, flags: list[CartFlag]) -> list[FlagView]:
    resolved = {(r.device_id, r.device_seq, r.reason): r for r in db.scalars(
        sa.select(FlagResolution).where(FlagResolution.session_id == session_id))}
    out = []
    for flag in flags:
        r = resolved.get((flag.device_id, flag.device_seq, str(flag.reason)))
        out.append(FlagView(str(flag.reason), flag.product_code, flag.device_id,
                            flag.device_seq, flag.detail, r.staff_id if r else None,
                            r.resolved_at if r else None, r.note if r else None))
    return out


def _at_staffed_checkout(view: SessionView) -> SessionView:
    """``view``, or Conflict when its session is not at the staffed checkout."""
    if view.status != "staffed":
        raise Conflict(f"session {view.id} is {view.status}, not at the staffed checkout")
    return view
