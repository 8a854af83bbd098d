"""The till of the staffed checkout: cash drawers with X and Z reports, and tenders.

A cash drawer is opened with a float; cash tenders go into the drawer open at
their till. The X report shows the running totals and leaves the drawer open;
the Z report closes it with the final totals and compares the cash expected
(float + cash sales - cash refunds - cash voids) with the cash counted. The whole Z
report is stored at close (``cash_drawers.z_report``), so a closed drawer's Z report is
read again unchanged (:meth:`Till.drawer`, :meth:`Till.drawers`) whatever is voided or
refunded later (a drawer closed before migration 0012 has none stored: it is recomputed,
with the expected cash stored at close), and a Z report sent again while no
drawer is open at the till, with the same staff member and count, answers with the
stored one (another count is a Conflict that says who closed it, when, with what).

Cash paid out of a drawer never exceeds the cash it is expected to hold
(:func:`drawer_cash_minor`, under the drawer's lock): a dispute's cash refund larger
than that is refused. Change at a cash tender is not checked: it is always less
than the cash handed over, which goes into the drawer first, so it never takes the
expected cash below what it was (denominations are not tracked: whether the notes
in the drawer make the change is for the cashier to see).

Tenders pay a staffed-checkout sale: cash (the change is computed) or card
through the payment processor (authorize then capture, each call with an
idempotency key derived from the tender, the state written before and after
each call, as in ``storefront.exit_payment``). A tender request carries the
client's own key: a retried request returns the stored tender, and a card
tender interrupted mid-call resumes where it stopped. Card tenders are never
larger than the balance due, so a card is never over-collected. Money is
integer minor units; times UTC.

Processor calls are retried a bounded number of times with the same key
(``storefront.payments.retry``: tenacity, a look-up before every retry), and a
tender resumed by a later request first asks the processor what became of its
call (``lookup``), as the payment journal does. A call whose outcome is still
unknown leaves the tender pending (``authorizing``/``authorized``) with the
reason; it is recorded ``failed`` only once the processor refused it or a
look-up found that it never took effect, so a hold is never left on the card
behind a tender that reads ``failed``. A hold that the tender cannot use any
more (another request of the same tender ended it first) is voided. A card
tender records the token it was started with (in clear while it is pending, as
``shoppers.payment_token`` holds it, and its SHA-256 for good): a resume is
finished on that card and a replay naming another card is refused.

A replay (the same key, kind, amount and till, and no card or the same card) returns
the stored tender, also once the sale has closed (:meth:`Till.replay`); the key sent
with other content is refused with what the key was used for, and nothing is changed.

Reconciliation (:meth:`Till.reconcile_pending`, run by ``storefront payments
reconcile``) settles card tenders left pending by a crash or a timeout without waiting
for a cashier to send them again: it looks the call up at the processor under the
tender's own key, as a resume does, and never sends an authorization. A hold it finds
is captured under the tender's capture key (the call a resume would send; the
processor answers a capture already made under that key with that capture), so the
money counts toward the sale; a hold the processor has no record of is recorded
``failed`` (no money), and the sale can take another tender. Every write is the same
compare-and-set as the tender path's (:meth:`Till._record`), and a cashier who sends the
tender again while reconciliation runs either finds it finished or finishes it under
the same keys: one recorded outcome, one capture at most.

Audit (when an :class:`~storefront.security.audit.Audit` is given): every outcome is
recorded by the request or run that wrote it, in the same database transaction as the
write (:meth:`~storefront.security.audit.Audit.record_in`), never by one that lost the
compare-and-set: the tender's state and its audit entry are stored together or not at
all. :meth:`Till.take` records the ``tender`` entry of a new tender with the request's
final write (a cash tender's insert; a card tender's outcome) and ``tender_settled`` with
a resend's write that decides a pending tender; reconciliation records
``tender_settled`` (actor ``reconcile``, with the ``state_before`` it found) with each
outcome it writes, ``hold_released`` with the note of each late hold it voided, and for a
card tender left ``voiding`` ``tender_voided`` (the processor has the refund) or
``tender_void_undone`` (it has none: the tender is paid again). Details are ids, amounts in
minor units, the currency and the processor's references (:func:`audit_details`),
never a card token or its digest. A failed audit write rolls its write back and is
raised: a cash tender is then not stored (sending it again takes it), a card tender
stays pending as it was before the write (sending it again, or reconciliation, looks
the processor's call up and records the outcome with its entry).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import CashDrawer, Dispute, Receipt, Tender
from storefront.errors import Conflict, InvalidInput, NotFound, PaymentError, StorefrontError
from storefront.money import format_minor
from storefront.payments import Operation, PaymentProcessor, ProcessorUnavailable
from storefront.payments.base import OperationKind, PaymentPending
from storefront.payments.retry import RetryPolicy, call_with_retry, resume_or_call
from storefront.security.audit import Audit, NewEntry

TenderKind = Literal["cash", "card"]
PAID_STATES = ("taken", "captured")
"""Tender states that paid their amount (cash taken, card captured)."""
PENDING_STATES = ("authorizing", "authorized")
"""Card tenders between processor calls: their amount is reserved, not yet paid."""
MAX_AMOUNT_MINOR = 10**9
_RESUME = "send the tender again with its key to finish it"
_NO_HOLD = ("reconciliation: the processor has no record of the authorization, no money "
            "was taken; take another tender")
ReconcileOutcome = Literal["paid", "no_money", "still_pending", "busy"]
VoidOutcome = Literal["voided", "not_voided", "still_voiding", "busy"]
# How long after reconciliation found no hold for a tender a later run still looks for one
# that arrived late (a resend's authorization that landed at the processor after the
# tender was recorded failed, its answer lost): such a hold is released.
LATE_HOLD_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class DrawerReport:
    """An X (running) or Z (final) report of one cash drawer; money in minor units.

    ``expected_cash_minor = float_minor + cash_sales_minor - cash_refunds_minor -
    cash_voids_minor``; ``difference_minor = counted_minor - expected_cash_minor`` (Z
    only: negative means cash is missing). ``cash_sales_minor`` (and the cash tendered
    and change given) count every cash tender taken into the drawer, also one voided
    later; ``cash_voids_minor`` is the cash of voided tenders paid back out of this
    drawer (the one open at the tender's till when it was voided).
    """

    kind: Literal["X", "Z"]
    drawer_id: str
    till_id: str
    currency: str
    opened_by: str
    opened_at: str
    float_minor: int
    cash_sales_minor: int
    cash_tendered_minor: int
    change_given_minor: int
    cash_refunds_minor: int
    card_sales_minor: int
    tenders: int
    expected_cash_minor: int
    closed_by: str | None = None
    closed_at: str | None = None
    counted_minor: int | None = None
    difference_minor: int | None = None
    cash_voids_minor: int = 0


@dataclass(frozen=True)
class TenderRequest:
    """One tender offered at the staffed checkout.

    ``amount_minor``: cash handed over (change is given back), or the amount to
    charge on the card. ``key``: the client's idempotency key of this tender.
    ``payment_token``: processor token of the card the request names (card only;
    None: not named). ``card_on_file``: the token charged when a *new* card tender
    names none; a tender resumed with its key is always finished on the card it
    was started with, never on this one.
    """

    session_id: str
    staff_id: str
    kind: TenderKind
    key: str
    till_id: str
    amount_minor: int
    currency: str
    payment_token: str | None = None
    card_on_file: str | None = None


@dataclass(frozen=True)
class TenderView:
    """A stored tender. ``amount_minor`` is what it pays of the sale."""

    id: str
    session_id: str
    kind: str
    state: str
    amount_minor: int
    tendered_minor: int
    change_minor: int
    till_id: str
    drawer_id: str | None
    staff_id: str
    capture_id: str | None
    reason: str | None
    created_at: str
    key: str | None = None
    """The client's idempotency key of the tender (send it again to resume the tender)."""
    void_state: str | None = None
    """None (not voided), ``voiding`` (a card refund whose outcome is not recorded yet:
    send the void again) or ``voided`` (the money went back; ``state`` is ``voided``)."""
    voided_by: str | None = None
    void_reason: str | None = None
    voided_at: str | None = None
    void_refund_id: str | None = None
    void_drawer_id: str | None = None


@dataclass(frozen=True)
class TenderResolution:
    """What one reconciliation run did with a card tender it found pending.

    ``outcome``: ``paid`` (the tender is captured: its ``amount_minor`` counts toward
    the sale), ``no_money`` (failed, declined or voided: nothing was taken and the sale
    can take another tender), ``still_pending`` (the processor could not say; the next
    run or a cashier sending the tender again finishes it) or ``busy`` (another request
    worked on the tender since it was read; left to it). ``state_before`` and ``state``
    are the tender's states when read and now; ``reason`` is its stored reason.
    """

    tender_id: str
    session_id: str
    key: str | None
    amount_minor: int
    state_before: str
    state: str
    outcome: ReconcileOutcome
    reason: str | None


@dataclass(frozen=True)
class VoidResolution:
    """What one reconciliation run did with a card tender it found ``voiding`` (its
    void's refund was started under ``void:<tender id>`` and its outcome never recorded).

    ``outcome``: ``voided`` (the processor has the refund: the tender is recorded
    ``voided`` with ``refund_id``; ``amount_minor`` went back to the shopper),
    ``not_voided`` (the processor has no record of a refund: the tender is back to
    paid, no void; staff may void it again), ``still_voiding`` (the processor could not
    answer, or its look-up cannot prove a miss: left for the next run or a resend of the
    void) or ``busy`` (a resend of the void or another run worked on the tender since it
    was read; left to it). ``reason`` says why, for the report.
    """

    tender_id: str
    session_id: str
    amount_minor: int
    outcome: VoidOutcome
    refund_id: str | None
    reason: str | None


@dataclass(frozen=True)
class TakeResult:
    """What one tender request did (:meth:`Till.take`).

    ``tender``: the tender now; ``balance_minor``: what is still due (minor units);
    ``new``: this request created the tender; ``wrote``: the last state this request
    itself wrote (None: it wrote none: a replay, or another request moved the tender on
    first). Its audit entry, if it owes one, is stored with its write.
    """

    tender: TenderView
    balance_minor: int
    new: bool
    wrote: str | None


@dataclass
class _Auditor:
    """Records the audit entries that one request's (or reconciliation run's) tender
    writes owe, each in the transaction of the write that owes it.

    ``new``: the request created the tender and owes one ``tender`` entry, stored with
    its final write (:func:`tender_details`); otherwise each write that decides a pending
    tender (a state out of ``PENDING_STATES``) owes ``tender_settled``
    (:func:`settled_details`). ``recorded``: the ``tender`` entry went in with a write.
    ``found``: the state a reconciliation run found the tender in, recorded as the
    entry's ``state_before`` (None: not recorded). ``audit`` None: nothing is recorded.
    """

    audit: Audit | None
    actor: str
    new: bool
    recorded: bool = False
    found: str | None = None

    def owed(self, row: Tender, state: str, *, final: bool) -> NewEntry | None:
        """The entry owed by writing ``state`` (``row`` holds what the write stored);
        ``final``: the request writes nothing after it. None: no entry is owed."""
        if self.audit is None:
            return None
        subject = f"session:{row.session_id}"
        if self.new:
            if not final or self.recorded:
                return None
            return NewEntry(self.actor, "tender", subject,
                            tender_details(audit_details(row), state))
        if state in PENDING_STATES:
            return None
        return NewEntry(self.actor, "tender_settled", subject,
                        settled_details(audit_details(row), state, before=self.found))

    def record_in(self, db: Session, row: Tender, state: str, *, final: bool = True) -> None:
        """Append the entry owed by writing ``state`` inside the write's transaction
        ``db`` (call it last, just before the commit). Raises what the audit log raises:
        the caller's transaction then rolls back with the write."""
        entry = self.owed(row, state, final=final)
        if entry is None or self.audit is None:
            return
        self.audit.record_in(db, [entry])
        self.recorded = self.recorded or self.new


def tender_outcome(state: str) -> str:
    """``approved`` (the tender paid: cash taken, card captured), ``pending`` (a card
    tender between processor calls) or ``declined`` (no money: declined, failed, voided)."""
    if state in PAID_STATES:
        return "approved"
    return "pending" if state in PENDING_STATES else "declined"


def audit_details(row: Tender) -> dict[str, object]:
    """What the audit log records of a tender: its id, method (``cash``/``card``),
    ``amount_minor`` (what it pays of the sale), currency and till; for cash the drawer,
    the cash handed over and the change given (minor units); for a card the processor's
    authorization and capture ids once known. Never the card's token nor its digest."""
    details: dict[str, object] = {"tender_id": row.id, "method": row.kind,
                                  "amount_minor": row.amount_minor, "currency": row.currency,
                                  "till_id": row.till_id}
    if row.kind == "cash":
        details |= {"drawer_id": row.drawer_id, "tendered_minor": row.tendered_minor,
                    "change_minor": row.change_minor}
        return details
    refs = {"authorization_id": row.authorization_id, "capture_id": row.capture_id}
    return details | {name: ref for name, ref in refs.items() if ref}


def tender_details(details: dict[str, object], state: str) -> dict[str, object]:
    """``tender`` details: ``details`` (:func:`audit_details`) with the ``outcome`` the
    request reached (:func:`tender_outcome`) and the ``state`` it left."""
    return {**details, "outcome": tender_outcome(state), "state": state}


def settled_details(details: dict[str, object], state: str, *,
                    before: str | None = None) -> dict[str, object]:
    """``tender_settled`` details: ``details`` (:func:`audit_details`) with ``outcome``
    ``captured`` (the money counts toward the sale) or ``failed`` (no money: failed,
    declined or voided), the ``state`` written and ``captured_minor`` (minor units);
    with ``before`` (reconciliation: the pending state it found the tender in, e.g.
    ``authorizing``), also ``state_before``."""
    captured = state in PAID_STATES
    out = {**details, "outcome": "captured" if captured else "failed", "state": state,
           "captured_minor": details["amount_minor"] if captured else 0}
    if before is not None:
        out["state_before"] = before
    return out


def tender_key(session_id: str, key: str) -> str:
    """The stored idempotency key (``tenders.idempotency_key``) of a client key."""
    return f"{session_id}:{key}"


def tender_view(row: Tender) -> TenderView:
    """The public view of a ``tenders`` row."""
    prefix = f"{row.session_id}:"
    key = row.idempotency_key
    return TenderView(row.id, row.session_id, row.kind, row.state, row.amount_minor,
                      row.tendered_minor, row.change_minor, row.till_id, row.drawer_id,
                      row.staff_id, row.capture_id, row.failure_reason,
                      row.created_at.isoformat(),
                      key[len(prefix):] if key.startswith(prefix) else key,
                      row.void_state, row.voided_by, row.void_reason,
                      row.voided_at.isoformat() if row.voided_at else None,
                      row.void_refund_id, row.void_drawer_id)


def lock_open_drawer(db: Session, till_id: str) -> CashDrawer | None:
    """The drawer open at ``till_id``, row-locked for this transaction (None if none).

    The no-op UPDATE takes the row lock on PostgreSQL and the write lock on
    SQLite, so a tender and a Z report of the same drawer cannot interleave.
    """
    db.execute(sa.update(CashDrawer).where(CashDrawer.open_till == till_id)
               .values(open_till=till_id))
    return db.scalars(sa.select(CashDrawer).where(CashDrawer.open_till == till_id)).first()


class Till:
    """Cash drawers and tenders over the database and the payment processor."""

    def __init__(self, *, sessions: sessionmaker[Session], processor: PaymentProcessor,
                 currency: str, clock: Clock, retry: RetryPolicy | None = None,
                 audit: Audit | None = None) -> None:
        """``audit``: where reconciliation records what it settled (None: not recorded)."""
        self._db = sessions
        self._audit = audit
        self._processor = processor
        self._currency = currency
        self._clock = clock
        self._retry = retry or RetryPolicy()

    # --- drawers ---------------------------------------------------------------------

    def open_drawer(self, *, till_id: str, staff_id: str, float_minor: int) -> DrawerReport:
        """Open a drawer at ``till_id`` with ``float_minor`` of change in it.

        Raises InvalidInput (negative or non-integer float), Conflict (a drawer is
        already open at this till).
        """
        _check_amount("float", float_minor, allow_zero=True)
        now = self._clock()
        drawer = CashDrawer(id=f"drw_{uuid.uuid4().hex}", till_id=till_id, open_till=till_id,
                            currency=self._currency, float_minor=float_minor,
                            opened_by=staff_id, opened_at=now)
        try:
            with self._db.begin() as db:
                db.add(drawer)
        except IntegrityError as exc:
            raise Conflict(f"a cash drawer is already open at till {till_id}") from exc
        return self.x_report(till_id=till_id)

    def x_report(self, *, till_id: str) -> DrawerReport:
        """Running totals of the drawer open at ``till_id``; it stays open.

        Raises NotFound when no drawer is open there (the reason names the till's last
        closed drawer, whose Z report :meth:`drawer` and :meth:`drawers` still read).
        """
        with self._db() as db:
            drawer = db.scalars(sa.select(CashDrawer)
                                .where(CashDrawer.open_till == till_id)).first()
            if drawer is None:
                raise NotFound(_none_open(till_id, _last_drawer(db, till_id)))
            return _report(db, drawer, "X")

    def close_drawer(self, *, till_id: str, staff_id: str, counted_minor: int) -> DrawerReport:
        """Z report: final totals, close the drawer, compare expected and counted cash
        (minor units). The whole report is stored with the drawer in the closing
        transaction (``cash_drawers.z_report``), so the report read
        again later (:meth:`drawer`, :meth:`drawers`) is the one given here.

        Sent again when no drawer is open at the till (its answer was lost, or two
        requests raced): the same content (``staff_id`` and ``counted_minor``) as the Z
        report of the till's last drawer answers with that stored report, and nothing is
        written. There is no client key: once a new drawer is open at the till, a Z report
        closes that one.

        Raises InvalidInput (negative count), NotFound (no drawer was ever opened at the
        till), Conflict (no drawer open and the last one was closed with another count or
        by another staff member: the reason says by whom, when and with what count).
        """
        _check_amount("counted cash", counted_minor, allow_zero=True)
        with self._db.begin() as db:
            drawer = lock_open_drawer(db, till_id)
            if drawer is None:
                return _replay_close(db, till_id, staff_id, counted_minor)
            drawer.closed_by, drawer.closed_at = staff_id, self._clock()
            drawer.counted_minor, drawer.open_till = counted_minor, None
            report = _report(db, drawer, "Z")
            drawer.expected_minor = report.expected_cash_minor
            drawer.z_report = asdict(report)  # read back as is: a later void changes nothing
            return report

    def drawers(self, *, till_id: str, limit: int = 20) -> list[DrawerReport]:
        """The till's drawers, newest first (at most ``limit``): the open one as its X
        report, closed ones as their Z reports (expected, counted and difference in minor
        units, as given when the drawer was closed). Empty for a till never opened.

        Raises ValueError when ``limit`` is not an integer between 1 and 1000.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit must be an integer between 1 and 1000")
        with self._db() as db:
            rows = db.scalars(sa.select(CashDrawer).where(CashDrawer.till_id == till_id)
                              .order_by(CashDrawer.opened_at.desc(), CashDrawer.id.desc())
                              .limit(limit)).all()
            return [_stored_report(db, row) for row in rows]

    def drawer(self, *, till_id: str, drawer_id: str) -> DrawerReport:
        """One drawer of ``till_id``: its Z report once closed, its X report while open.

        Raises NotFound when the till has no drawer ``drawer_id``.
        """
        with self._db() as db:
            row = db.get(CashDrawer, drawer_id)
            if row is None or row.till_id != till_id:
                raise NotFound(f"till {till_id} has no cash drawer {drawer_id}")
            return _stored_report(db, row)

    # --- tenders ---------------------------------------------------------------------

    def take(self, request: TenderRequest, *, total: Callable[[Session], int],
             guard: Callable[[Session], None], audit: Audit | None = None) -> TakeResult:
        """Take (or replay, or resume) one tender of a sale.

        In one write transaction: ``guard(db)`` first (the staffed checkout checks
        the staff claim there, which also serialises the writes of a session), then
        ``total(db)``, the sale's total in minor units, read in that same
        transaction so that no correction lands between pricing and charging; then
        the tender is found by its key or created against that total. A card tender
        left pending (a crash, a lost answer) is resumed: it is stamped as worked on in
        that transaction (reconciliation leaves it alone then), and the processor is asked
        what became of its last call before anything is sent again. Returns the
        tender, the balance still due (minor units) and what this request wrote
        (:class:`TakeResult`). A card decline or a processor refusal is a result (state
        ``declined``/``failed``/``voided`` and a reason); an outcome still unknown after
        bounded retries leaves the tender pending with the reason.

        ``audit``: where the request's entry goes (actor ``staff:<staff_id>``, subject
        ``session:<id>``; None: not audited), in the transaction of the write that owes
        it: ``tender`` with a new tender's final write (a cash tender's insert, a card
        tender's outcome, also a pending one), ``tender_settled`` with a resend's write
        that decides a pending tender; a replay records nothing. A new tender whose last
        write lost the compare-and-set to another request of it (which records what it
        decided with its own write) has its ``tender`` entry written on its own after.

        Raises:
            InvalidInput: amount not a positive integer, card amount above the balance due.
            Conflict: nothing is due, no drawer open for cash, the key reused with
                other content, the audit log stayed contended; whatever ``guard`` or
                ``total`` raise. A failed audit write (Conflict or a database error)
                rolls its write back: a cash tender is not stored, a card tender stays
                pending as before that write (send it again with its key).
        """
        _check_amount("tender amount", request.amount_minor, allow_zero=False)
        key = tender_key(request.session_id, request.key)
        try:
            with self._db.begin() as db:
                guard(db)
                total_minor = total(db)
                row = db.scalars(sa.select(Tender).where(Tender.idempotency_key == key)).first()
                by = _Auditor(audit, f"staff:{request.staff_id}", new=row is None)
                if row is None:
                    row = self._new_tender(db, request, key, total_minor)
                    if row.kind == "cash":  # taken in this write, the request's only one
                        by.record_in(db, row, row.state)
                else:
                    _check_replay(row, request)
                    self._touch_pending(db, row)
        except IntegrityError as exc:
            raise Conflict("this tender is being taken by another request; retry") from exc
        wrote = row.state if by.new else None
        if row.kind == "card" and row.state in PENDING_STATES:
            # The card the tender was started with; a tender stored before tokens were
            # recorded (NULL) is finished on the card this request names.
            token = row.payment_token or request.payment_token or request.card_on_file or ""
            wrote = self._run_card(row, token, resumed=not by.new, by=by) or wrote
        _audit_lost_race(by, row, wrote)
        return TakeResult(tender_view(row), total_minor - self.paid_minor(request.session_id),
                          by.new, wrote)

    def replay(self, request: TenderRequest) -> TenderView | None:
        """The stored tender that ``request`` sends again, read only (None: no tender is
        stored under its key). Nothing is charged, resumed or written: this answers a
        replay once the sale is closed and its claim is gone.

        Raises Conflict when the key was used with other content (kind, amount, till)
        or the tender was started on another card.
        """
        with self._db() as db:
            row = db.scalars(sa.select(Tender).where(
                Tender.idempotency_key == tender_key(request.session_id, request.key))).first()
            if row is None:
                return None
            _check_replay(row, request)
            return tender_view(row)

    def find(self, session_id: str, key: str) -> TenderView | None:
        """The tender stored under the client's ``key`` for the session, or None."""
        with self._db() as db:
            row = db.scalars(sa.select(Tender).where(
                Tender.idempotency_key == tender_key(session_id, key))).first()
            return None if row is None else tender_view(row)

    def _new_tender(self, db: Session, request: TenderRequest, key: str,
                    total_minor: int) -> Tender:
        balance = total_minor - _reserved(db, request.session_id)
        if balance <= 0:
            raise Conflict(f"nothing is due on session {request.session_id}")
        amount, change, drawer_id = request.amount_minor, 0, None
        drawer = lock_open_drawer(db, request.till_id)
        if request.kind == "cash":
            if drawer is None:
                raise Conflict(f"no cash drawer is open at till {request.till_id}")
            amount, change = min(request.amount_minor, balance), max(0, request.amount_minor
                                                                    - balance)
        elif request.amount_minor > balance:
            raise InvalidInput(f"card amount {format_minor(request.amount_minor, self._currency)}"
                               f" is more than the balance due "
                               f"{format_minor(balance, self._currency)}: a card is never "
                               f"charged more than is due")
        now = self._clock()
        token = (request.payment_token or request.card_on_file) if request.kind == "card" \
            else None
        row = Tender(id=f"tnd_{uuid.uuid4().hex}", session_id=request.session_id,
                     idempotency_key=key, kind=request.kind,
                     state="taken" if request.kind == "cash" else "authorizing",
                     amount_minor=amount, tendered_minor=request.amount_minor,
                     change_minor=change, currency=request.currency, till_id=request.till_id,
                     drawer_id=drawer.id if drawer is not None else drawer_id,
                     staff_id=request.staff_id, created_at=now, updated_at=now,
                     payment_token=token,
                     payment_token_sha256=None if token is None else token_digest(token))
        db.add(row)
        db.flush()
        return row

    def _touch_pending(self, db: Session, row: Tender) -> None:
        """Inside the guarded transaction of a request that resumes ``row``: stamp the
        pending card tender as worked on now, so that reconciliation (which only takes
        tenders at rest for longer than its ``older_than``) leaves it to this request.
        ``row`` is read again when another request moved it on meanwhile."""
        if row.kind != "card" or row.state not in PENDING_STATES:
            return
        done = db.execute(sa.update(Tender).where(Tender.id == row.id,
                                                  Tender.state == row.state)
                          .values(updated_at=self._clock()))
        if not int(done.rowcount or 0):  # type: ignore[attr-defined]
            db.refresh(row)

    def _run_card(self, row: Tender, token: str, *, resumed: bool,
                  by: _Auditor) -> str | None:
        """Authorize (unless done) then capture; ``resumed``: an earlier request of this
        tender may have sent a call whose answer was lost, so look it up first. Returns
        the last state this request wrote (None: another request moved the tender on).
        ``by`` audits the writes (:class:`_Auditor`)."""
        if row.state == "authorizing":
            wrote = self._authorize(row, token, resumed=resumed, by=by)
            if wrote != "authorized":
                return wrote
            # The hold was just placed here: no capture was sent yet.
            return self._capture(row, resumed=False, by=by) or wrote
        return self._capture(row, resumed=resumed, by=by)

    def _authorize(self, row: Tender, token: str, *, resumed: bool,
                   by: _Auditor) -> str | None:
        """Place (or find) the hold; returns the state written (``authorized`` when the
        tender is authorized by it), None when another request moved the tender on."""
        key = _authorize_key(row)

        def call() -> Operation:
            auth = self._processor.authorize(token=token, amount_minor=row.amount_minor,
                                             currency=row.currency, idempotency_key=key)
            return Operation("authorize", auth.authorization_id,
                             "succeeded" if auth.status == "authorized" else "declined",
                             auth.amount_minor, auth.decline_reason)

        try:
            found = self._call(call, kind="authorize", key=key, reference=None,
                               resumed=resumed)
        except ProcessorUnavailable as exc:
            return self._write(row, row.state, by=by,
                               failure=f"authorization outcome unknown: {exc.reason}; "
                                       f"{_RESUME}")
        except PaymentError as exc:
            return self._write(row, "failed", by=by, failure=f"payment failed: {exc.reason}")
        if found.status != "succeeded":
            return self._write(row, "declined", by=by, auth=found.reference,
                               failure=f"payment declined: {found.reason or 'declined'}")
        # Not the request's final write: the capture follows.
        if not self._record(row, "authorized", by=by, final=False, auth=found.reference):
            self._void_unused(row, found.reference)
            return None
        return "authorized"

    def _capture(self, row: Tender, *, resumed: bool, by: _Auditor) -> str | None:
        """Capture the tender's amount on its hold (or find the capture); returns the
        state written (None: another request moved the tender on first), audited by
        ``by``."""
        auth_id = row.authorization_id or ""
        key = f"tender:{row.id}:capture"

        def call() -> Operation:
            done = self._processor.capture(authorization_id=auth_id,
                                           amount_minor=row.amount_minor, idempotency_key=key)
            return Operation("capture", done.capture_id, "succeeded", done.amount_minor)

        try:
            found = self._call(call, kind="capture", key=key, reference=auth_id,
                               resumed=resumed)
        except ProcessorUnavailable as exc:
            return self._write(row, "authorized", by=by,
                               failure=f"capture outcome unknown: {exc.reason}; {_RESUME}")
        except PaymentError as exc:
            return self._release(row, auth_id, f"payment failed: {exc.reason}", by=by)
        return self._write(row, "captured", by=by, capture=found.reference)

    def _call(self, call: Callable[[], Operation], *, kind: OperationKind, key: str,
              reference: str | None, resumed: bool) -> Operation:
        """``call()`` with bounded retries under the same key, a look-up before each retry
        and, when ``resumed``, before the first call too (``storefront.payments.retry``).

        Raises ProcessorUnavailable (outcome unknown after the retries) or PaymentError.
        """
        def lookup() -> Operation | None:
            return self._processor.lookup(kind=kind, idempotency_key=key, reference=reference)

        return resume_or_call(call, lookup=lookup, policy=self._retry, resumed=resumed)

    def _void(self, auth_id: str, key: str) -> None:
        """Void the hold ``auth_id`` under ``key`` (bounded retries, look-up first on a
        retry). Raises PaymentError (refused) or ProcessorUnavailable (no answer)."""
        def void() -> Operation:
            self._processor.void(authorization_id=auth_id, idempotency_key=key)
            return Operation("void", auth_id, "succeeded", 0)

        self._call(void, kind="void", key=key, reference=auth_id, resumed=False)

    def _void_unused(self, row: Tender, auth_id: str) -> None:
        """Release a hold the tender will not use: another request of the same tender
        ended it (``failed``, ``declined``, ``voided``) without this hold. Best effort: a
        void that fails is recorded in the tender's reason for staff to follow up."""
        if row.state not in ("failed", "declined", "voided") or not auth_id \
                or row.authorization_id == auth_id:
            return
        try:
            self._void(auth_id, f"tender:{row.id}:void-unused")
        except PaymentError as exc:
            with self._db.begin() as db:
                db.execute(sa.update(Tender).where(Tender.id == row.id).values(
                    failure_reason=f"{row.failure_reason}; hold {auth_id} not released: "
                                   f"{exc.reason}"[:300]))

    def _release(self, row: Tender, auth_id: str, reason: str, *,
                 by: _Auditor) -> str | None:
        """Void the hold after a refused capture; if that fails the tender stays pending.
        Returns the state written (None: another request moved the tender on first),
        audited by ``by``."""
        try:
            self._void(auth_id, f"tender:{row.id}:void")
        except PaymentError as exc:
            # The capture may have gone through after all: keep the amount reserved;
            # retrying the tender with its key looks the capture up, then captures again
            # under the same key.
            return self._write(row, "authorized", by=by,
                               failure=f"{reason}; hold not released: {exc.reason}; "
                                       f"{_RESUME}")
        return self._write(row, "voided", by=by, failure=f"{reason}; hold released")

    def _write(self, row: Tender, state: str, *, by: _Auditor, **kw: Any) -> str | None:
        """:meth:`_record`, returning ``state`` when written and None when not."""
        return state if self._record(row, state, by=by, **kw) else None

    def _record(self, row: Tender, state: str, *, by: _Auditor | None = None, final: bool = True,
                auth: str | None = None, capture: str | None = None,
                failure: str | None = None, stamp: datetime | None = None) -> bool:
        """Move the tender from ``row.state`` (the state this request read) to ``state``:
        ``UPDATE ... WHERE state = row.state``, so a concurrent request of the same tender
        that moved it on first (to ``captured``, say) is never written over; with
        ``stamp`` (reconciliation's claim), also only while the tender's last change is
        still that stamp, so a resend that started after the claim is never overtaken.
        Returns False, with ``row`` reloaded, when the compare failed: the caller stops
        there. The audit entry the write owes (``by``, None: none; ``final``: the request
        writes nothing after it) is appended in the same transaction: a failed audit write
        rolls the write back and is raised, ``row`` left as it was (the caller stops
        there too)."""
        before = _outcome(row)
        after = (state, failure, auth or row.authorization_id, capture or row.capture_id)
        try:
            with self._db.begin() as db:
                # The clear token is kept only while a resume may still need it.
                keep = {} if state in PENDING_STATES else {"payment_token": None}
                claim = () if stamp is None else (Tender.updated_at == stamp,)
                done = db.execute(sa.update(Tender).where(Tender.id == row.id,
                                                          Tender.state == row.state, *claim)
                                  .values(state=state, updated_at=self._clock(),
                                          authorization_id=after[2], capture_id=after[3],
                                          failure_reason=failure, **keep))
                if not int(done.rowcount or 0):  # type: ignore[attr-defined]
                    stored = db.get(Tender, row.id)
                    if stored is None:
                        raise StorefrontError(f"tender {row.id} vanished")
                    _set_outcome(row, _outcome(stored))
                    return False
                _set_outcome(row, after)
                if by is not None:
                    by.record_in(db, row, state, final=final)
        except BaseException:
            _set_outcome(row, before)
            raise
        return True

    # --- reconciliation --------------------------------------------------------------

    def reconcile_pending(self, *, older_than: timedelta) -> list[TenderResolution]:
        """Settle the card tenders left pending for longer than ``older_than``; returns
        what was done with each, oldest first.

        Safe while the service runs: a tender is taken only with a compare-and-set on
        its state and its last change (a cashier's resend stamps it, see
        :meth:`take`), and every outcome is recorded with the tender path's own
        compare-and-set, so a request that finished the tender first is never written
        over. For a tender ``authorizing`` the authorization is looked up under the
        tender's key (never sent): none found, the tender is ``failed``; declined,
        ``declined``; found, it is recorded ``authorized`` and, as for a tender found
        ``authorized``, captured under the tender's capture key after a look-up of that
        capture (:meth:`_capture`: a refused capture voids the hold). A processor that
        cannot answer leaves the tender pending (``still_pending``). Money in minor
        units.

        Each outcome this run wrote itself (never one another request or run wrote first,
        nor a tender left pending) is recorded in the audit log as ``tender_settled``
        (actor ``reconcile``, :func:`settled_details` with ``state_before``, the pending
        state the run found) in the write's own transaction. A tender the run leaves
        pending has no entry, also when it moved it from ``authorizing`` to ``authorized``
        (its hold found, the capture's outcome unknown): no money moved, and the entry of
        its outcome, when a later run or a resend decides it, says ``authorized``.

        Raises ValueError for a negative ``older_than``; whatever the audit log raises
        (the outcome's write is rolled back with it: the tender stays pending for the
        next run, as do the tenders after it).
        """
        if older_than < timedelta(0):
            raise ValueError("older_than must be >= 0")
        cutoff = self._clock() - older_than
        with self._db() as db:
            rows = list(db.scalars(sa.select(Tender).where(
                Tender.kind == "card", Tender.state.in_(PENDING_STATES),
                Tender.updated_at < cutoff).order_by(Tender.created_at, Tender.id)))
        return [self._reconcile_one(row, cutoff) for row in rows]

    def _reconcile_one(self, row: Tender, cutoff: datetime) -> TenderResolution:
        """Look up and settle one pending card tender (see :meth:`reconcile_pending`)."""
        before = row.state
        stamp = self._claim_for_reconcile(row, cutoff)
        if stamp is None:
            return _resolution(row, before, "busy")
        by = _Auditor(self._audit, "reconcile", new=False, found=before)
        if row.state == "authorizing":
            lookup = self._authorization_lookup(row)
            try:
                found = call_with_retry(lookup, lookup=lookup, policy=self._retry)
            except PaymentError:  # unreachable or refusing to say: try again later
                return _resolution(row, before, "still_pending")
            if found is None and not self._processor.lookup_is_complete:
                # A miss here does not prove there is no hold: leave it to a resend,
                # which sends the authorization again under the same key.
                return _resolution(row, before, "still_pending")
            if found is None:
                wrote = self._write(row, "failed", by=by, failure=_NO_HOLD, stamp=stamp)
            elif found.status != "succeeded":
                wrote = self._write(row, "declined", by=by, auth=found.reference,
                                    failure=f"payment declined: "
                                            f"{found.reason or 'declined'}", stamp=stamp)
            else:
                wrote = self._write(row, "authorized", by=by, auth=found.reference,
                                    stamp=stamp)
                if wrote is None:
                    self._void_unused(row, found.reference)
            if wrote is None:
                return _resolution(row, before, "busy")
        if row.state == "authorized":
            self._capture(row, resumed=True, by=by)
        return _resolution(row, before, _outcome_of(row.state))

    def release_late_holds(self) -> int:
        """Void holds that reached the processor after reconciliation recorded their tender
        ``failed`` for lack of one (a cashier's resend in flight whose answer was lost);
        returns how many were released. Looks at such tenders of the last
        ``LATE_HOLD_WINDOW`` only, with processors whose look-up is complete (no other
        processor ever gets a tender failed on a miss). A tender whose hold is released
        says so in its reason and is not looked at again; a void that fails is retried by
        the next run. The tender stays ``failed``: it never counted toward the sale.

        The run that records the release in the tender (not a concurrent run that voided
        the same hold under the same key) counts it and writes a ``hold_released`` audit
        entry (actor ``reconcile``: tender id, authorization id, the hold's amount in
        minor units) in the same transaction; whatever the audit log raises is raised,
        the note rolled back with it (the next run voids the hold again under the same
        key, which the processor answers as done, and records it)."""
        if not self._processor.lookup_is_complete:
            return 0
        since = self._clock() - LATE_HOLD_WINDOW
        with self._db() as db:
            rows = list(db.scalars(sa.select(Tender).where(
                Tender.kind == "card", Tender.state == "failed",
                Tender.failure_reason == _NO_HOLD, Tender.updated_at >= since)))
        released = 0
        for row in rows:
            try:
                found = self._authorization_lookup(row)()
                if found is None or found.status != "succeeded" or not found.reference:
                    continue
                self._void(found.reference, f"tender:{row.id}:void-late")
            except PaymentError:
                continue  # the next run tries again
            if self._note_release(row, found):
                released += 1
        return released

    def _note_release(self, row: Tender, hold: Operation) -> bool:
        """Say in the tender's reason that its late ``hold`` was voided and audit it, in
        one transaction; False when another run recorded it first (nothing is written
        then). Raises what the audit log raises (nothing is written then either)."""
        with self._db.begin() as db:
            done = db.execute(sa.update(Tender).where(
                Tender.id == row.id, Tender.failure_reason == _NO_HOLD).values(
                failure_reason=f"{_NO_HOLD}; a hold that reached the processor later "
                               f"({hold.reference}) was released"[:300]))
            if not int(done.rowcount or 0):  # type: ignore[attr-defined]
                return False
            if self._audit is not None:
                self._audit.record_in(db, [NewEntry(
                    "reconcile", "hold_released", f"session:{row.session_id}",
                    {**audit_details(row), "authorization_id": hold.reference,
                     "released_minor": hold.amount_minor})])
        return True

    def _authorization_lookup(self, row: Tender) -> Callable[[], Operation | None]:
        """The look-up of the tender's authorization under its key (never sends one)."""
        key = _authorize_key(row)
        return lambda: self._processor.lookup(kind="authorize", idempotency_key=key,
                                              reference=None)

    def _claim_for_reconcile(self, row: Tender, cutoff: datetime, *,
                             void_state: str | None = None) -> datetime | None:
        """Stamp ``row`` as worked on now, provided it is still in the state read and
        nobody (a cashier's resend, another reconciliation run) stamped it since
        ``cutoff``; returns the stamp, which the outcome's write requires to be still
        there (a resend that started meanwhile re-stamps the tender, and then
        reconciliation backs off). With ``void_state``, also only while the tender's void
        is still in that state. None: leave it to them."""
        stamp = self._clock()
        void = () if void_state is None else (Tender.void_state == void_state,)
        with self._db.begin() as db:
            done = db.execute(sa.update(Tender).where(
                Tender.id == row.id, Tender.state == row.state, Tender.updated_at < cutoff,
                *void).values(updated_at=stamp))
            claimed = bool(int(done.rowcount or 0))  # type: ignore[attr-defined]
        if claimed:
            row.updated_at = stamp
        return stamp if claimed else None

    # --- voids -----------------------------------------------------------------------

    def void_tender(self, *, session_id: str, tender_id: str, staff_id: str, reason: str,
                    guard: Callable[[Session], None],
                    audit: Audit | None = None) -> TenderView:
        """Void a tender of an open sale: its money goes back to the shopper.

        In one write transaction, after ``guard(db)`` (the staffed checkout's claim
        check, which serialises the writes of a session): the tender is read again and
        checked (no receipt yet; the tender paid). A cash tender (``taken``) is voided
        there: the cash it kept (``amount_minor``, tendered minus change) is paid back
        out of the drawer open at the tender's till (``void_drawer_id``; its X/Z reports
        count it in ``cash_voids_minor``), and the tender reads ``voided``. A card tender
        (``captured``: staffed card tenders are captured in the request that takes them)
        is refunded through the processor: ``void_state`` ``voiding`` is written first,
        then the refund of ``amount_minor`` is sent under the idempotency key
        ``void:<tender id>`` (bounded retries with a look-up before each retry, and
        before the first call when an earlier request already started the void), and
        the refund's id and the ``voided`` state are written after it. Until then the
        tender still counts as paid. The ``tender_voided`` audit entry (actor
        ``staff:<staff_id>``, subject ``session:<id>``; :func:`audit_details` with the
        reason, ``voided_minor`` and the refund id or payout drawer) is written in the
        transaction that records the void: both are stored or neither.

        Idempotent: a tender already voided is returned unchanged (no claim needed), and
        sending a void that is ``voiding`` again finishes it: the processor is asked
        first what became of the refund, so nothing is refunded twice. Money in minor
        units.

        Raises:
            NotFound: no such tender in this session.
            Conflict: the sale is closed (a receipt was issued); the tender is a pending
                card tender (finish it first by sending it again with its key, or let
                reconciliation settle it) or took no money (declined, failed); no cash
                drawer is open at the tender's till, or it is expected to hold less cash
                than the tender kept; whatever ``guard`` raises; the audit
                log stayed contended (nothing recorded: send the void again).
            PaymentPending: the refund's outcome is still unknown after the retries, or
                the processor refused it and could not say whether an earlier refund
                under the key went through; the tender stays ``voiding`` and still
                counts as paid: send the void again (or let reconciliation settle it,
                :meth:`reconcile_voiding`).
            PaymentError: the processor refused the refund and its look-up found no
                earlier one; nothing was refunded and the tender stays paid, not voiding.
            Conflict: also when the void's last write found the tender changed by
                another request or run that did not void it (the reason says whether
                this request's refund went through, with its id).
        """
        with self._db.begin() as db:
            row = db.get(Tender, tender_id)
            if row is None or row.session_id != session_id:
                raise NotFound(f"no tender {tender_id!r} in session {session_id}")
            if row.void_state == "voided":
                return tender_view(row)
            guard(db)
            db.refresh(row)
            if row.void_state == "voided":
                return tender_view(row)
            if db.scalars(sa.select(Receipt.id)
                          .where(Receipt.session_id == session_id)).first() is not None:
                raise Conflict(f"session {session_id} is closed: a tender of a closed sale "
                               f"is refunded by a dispute of the receipt, not voided")
            if row.state in PENDING_STATES:
                raise Conflict(f"card tender {row.id} is pending ({row.state}): "
                               f"{_RESUME} (or run reconciliation), then void it")
            if row.state not in PAID_STATES:
                raise Conflict(f"tender {row.id} took no money ({row.state}): there is "
                               f"nothing to void")
            now = self._clock()
            if row.kind == "cash":
                drawer = lock_open_drawer(db, row.till_id)
                if drawer is None:
                    raise Conflict(f"no cash drawer is open at till {row.till_id} to pay "
                                   f"the cash of tender {row.id} back from: open one first")
                held = drawer_cash_minor(db, drawer)
                if row.amount_minor > held:
                    kept = format_minor(row.amount_minor, row.currency)
                    raise Conflict(f"tender {row.id} kept {kept} in cash, more than the "
                                   f"drawer at till {row.till_id} is expected to hold "
                                   f"({format_minor(held, row.currency)}): nothing was voided")
                before = row.state, row.void_state
                row.state, row.void_state, row.void_drawer_id = "voided", "voided", drawer.id
                row.void_reason, row.voided_by, row.voided_at = reason, staff_id, now
                row.updated_at = now
                db.flush()
                _audit_void(audit, db, row, before=before)
                return tender_view(row)
            resumed = row.void_state == "voiding"
            if not resumed:
                row.void_state, row.void_reason, row.voided_by = "voiding", reason, staff_id
            # Stamped as worked on (also a resend): reconciliation of voids leaves a tender
            # changed since its cutoff alone, and never undoes one stamped after its claim.
            row.updated_at = now
            db.flush()
        return self._refund_void(row, resumed=resumed, audit=audit)

    def _refund_void(self, row: Tender, *, resumed: bool, audit: Audit | None) -> TenderView:
        """Refund the captured card tender ``row`` (``voiding``) under ``void:<id>`` and
        record it ``voided`` (see :meth:`void_tender` for what is raised)."""
        key, capture_id = f"void:{row.id}", row.capture_id or ""

        def call() -> Operation:
            done = self._processor.refund(capture_id=capture_id, amount_minor=row.amount_minor,
                                          idempotency_key=key)
            return Operation("refund", done.refund_id, "succeeded", done.amount_minor)

        def lookup() -> Operation | None:
            return self._processor.lookup(kind="refund", idempotency_key=key,
                                          reference=capture_id)

        try:
            found = self._call(call, kind="refund", key=key, reference=capture_id,
                               resumed=resumed)
        except ProcessorUnavailable as exc:
            raise PaymentPending(f"the refund of voided tender {row.id} has an unknown "
                                 f"outcome ({exc.reason}): the tender still counts as paid; "
                                 f"send the void again (nothing is refunded twice)") from exc
        except PaymentError as exc:
            try:  # a refused call: had an earlier one under the key gone through?
                earlier = lookup()
            except PaymentError as missed:
                # No answer is not "no refund": undoing the void now could leave a refund
                # that went through recorded as paid. Keep it voiding for a resend or
                # reconciliation (:meth:`reconcile_voiding`) to settle.
                raise PaymentPending(
                    f"the processor refused the refund of tender {row.id} ({exc.reason}) "
                    f"and could not say whether an earlier refund under its key went "
                    f"through ({missed.reason}): the tender stays voiding and still counts "
                    f"as paid; send the void again (nothing is refunded twice)") from exc
            if earlier is None:
                if self._undo_void(row):
                    raise PaymentError(f"the processor refused the refund of tender "
                                       f"{row.id}: {exc.reason}; the tender stays paid") from exc
                return self._void_winner(row, None, exc.reason)
            found = earlier
        view = self._record_void(row, found.reference, actor=None, audit=audit)
        return view if view is not None else self._void_winner(row, found.reference, None)

    def _record_void(self, row: Tender, refund_id: str, *, actor: str | None,
                     audit: Audit | None, stamp: datetime | None = None) -> TenderView | None:
        """Record the ``voiding`` card tender ``row`` ``voided`` with the processor's
        ``refund_id`` and its ``tender_voided`` entry (``actor``; None: the staff member
        who voided it) in one transaction, compare-and-set on ``voiding`` (and, with
        ``stamp``, on reconciliation's claim). None: the compare-and-set lost (another
        request or run changed the tender first; nothing written)."""
        with self._db.begin() as db:
            now = self._clock()
            claim = () if stamp is None else (Tender.updated_at == stamp,)
            done = db.execute(sa.update(Tender).where(
                Tender.id == row.id, Tender.void_state == "voiding",
                Tender.state.in_(PAID_STATES), *claim).values(
                state="voided", void_state="voided", voided_at=now,
                void_refund_id=refund_id, updated_at=now))
            if int(done.rowcount or 0):  # type: ignore[attr-defined]
                stored = db.get_one(Tender, row.id)
                db.refresh(stored)
                # Before the write: paid (as read, and as the WHERE above required), voiding.
                _audit_void(audit, db, stored, before=(row.state, "voiding"), actor=actor)
                return tender_view(stored)
        return None

    def _void_winner(self, row: Tender, refund_id: str | None,
                     refused: str | None) -> TenderView:
        """This request's last write of a void lost its compare-and-set: the tender as the
        request (or run) that moved it first left it, when that is ``voided``.

        Raises Conflict otherwise, saying what this request knows: its refund
        ``refund_id`` went through (None: it was refused, ``refused`` saying why) while
        the tender is no longer ``voiding`` (put back to paid meanwhile: staff must
        check the sale, the refund is recorded nowhere else)."""
        with self._db() as db:
            stored = db.get_one(Tender, row.id)
            if stored.void_state == "voided":
                return tender_view(stored)
            state = f"{stored.state}, void state {stored.void_state or 'none'}"
        if refund_id is None:
            raise Conflict(f"the processor refused the refund of tender {row.id} "
                           f"({refused}), and the tender was meanwhile changed by another "
                           f"request ({state}): read it again before voiding")
        raise Conflict(f"the refund {refund_id} of tender {row.id} went through, but the "
                       f"tender was meanwhile changed by another request ({state}) and is "
                       f"not recorded voided: check the sale; this refund is not recorded "
                       f"anywhere else")

    def reconcile_voiding(self, *, older_than: timedelta) -> list[VoidResolution]:
        """Settle the card tenders left ``voiding`` (a crash or a lost answer after the
        void's refund was sent, before its outcome was written) whose last change is
        older than ``older_than``; returns what was done with each, oldest first.

        Each tender is claimed first (compare-and-set on ``voiding`` and its last change
        still before the cutoff; a resend of the void re-stamps the tender, and then
        reconciliation backs off: ``busy``), then the refund is looked up under
        ``void:<tender id>`` (never sent). Found: the tender is recorded ``voided`` with
        the refund's id and a ``tender_voided`` audit entry (actor ``reconcile``) in one
        transaction. The processor has no record of it (a miss from a processor whose
        look-up is complete): the tender goes back to paid, no void (``not_voided``; the
        void's reason is dropped, the resolution says so), with a ``tender_void_undone``
        entry (actor ``reconcile``: the void's reason and who started it, the states
        before and after, the amount in minor units) in the same transaction. The
        processor cannot answer,
        or its look-up is not complete (a miss proves nothing): the tender stays
        ``voiding`` for the next run (``still_voiding``). Money in minor units.

        Raises ValueError for a negative ``older_than``; whatever the audit log raises
        (the write is rolled back with it: the tender stays ``voiding`` for the next run,
        as do the tenders after it).
        """
        if older_than < timedelta(0):
            raise ValueError("older_than must be >= 0")
        cutoff = self._clock() - older_than
        with self._db() as db:
            rows = list(db.scalars(sa.select(Tender).where(
                Tender.kind == "card", Tender.void_state == "voiding",
                Tender.state.in_(PAID_STATES), Tender.updated_at < cutoff)
                .order_by(Tender.created_at, Tender.id)))
        return [self._reconcile_void(row, cutoff) for row in rows]

    def _reconcile_void(self, row: Tender, cutoff: datetime) -> VoidResolution:
        """Look up and settle one ``voiding`` card tender (see :meth:`reconcile_voiding`)."""
        def resolved(outcome: VoidOutcome, refund_id: str | None,
                     reason: str | None) -> VoidResolution:
            return VoidResolution(row.id, row.session_id, row.amount_minor, outcome,
                                  refund_id, reason)

        stamp = self._claim_for_reconcile(row, cutoff, void_state="voiding")
        if stamp is None:
            return resolved("busy", None, "changed since it was read: left to that request")
        key, capture_id = f"void:{row.id}", row.capture_id or ""

        def lookup() -> Operation | None:
            return self._processor.lookup(kind="refund", idempotency_key=key,
                                          reference=capture_id)

        try:
            found = call_with_retry(lookup, lookup=lookup, policy=self._retry)
        except PaymentError as exc:  # unreachable or refusing to say: try again later
            return resolved("still_voiding", None,
                            f"the processor could not say what became of the refund: "
                            f"{exc.reason}")
        if found is not None:
            view = self._record_void(row, found.reference, actor="reconcile",
                                     audit=self._audit, stamp=stamp)
            if view is None:
                return resolved("busy", found.reference,
                                "another request settled the void first")
            return resolved("voided", view.void_refund_id, "the processor has the refund")
        if not self._processor.lookup_is_complete:
            return resolved("still_voiding", None,
                            "the processor's look-up found no refund, which does not prove "
                            "there is none: send the void again to finish it")
        if not self._undo_void(row, stamp, audit=self._audit):
            return resolved("busy", None, "changed since it was claimed: left to that request")
        return resolved("not_voided", None,
                        f"the processor has no record of a refund under {key}: the tender "
                        f"is paid again, not voided (void it again if it still should be)")

    def _undo_void(self, row: Tender, stamp: datetime | None = None, *,
                   audit: Audit | None = None) -> bool:
        """A refund the processor has no record of (refused, nothing refunded): the
        tender stays paid and is no longer ``voiding``; compare-and-set on ``voiding``
        (and, with ``stamp``, on reconciliation's claim). False: another request or run
        changed the tender first (nothing written).

        ``audit`` (reconciliation's): the ``tender_void_undone`` entry (actor
        ``reconcile``, :func:`_audit_void_undone`) is appended in the same transaction,
        so the tender goes back to paid with its entry or not at all (what the audit log
        raises is raised, the write rolled back: the tender stays ``voiding``)."""
        claim = () if stamp is None else (Tender.updated_at == stamp,)
        with self._db.begin() as db:
            done = db.execute(sa.update(Tender).where(Tender.id == row.id,
                                                      Tender.void_state == "voiding", *claim)
                              .values(void_state=None, void_reason=None, voided_by=None,
                                      updated_at=self._clock()))
            undone = bool(int(done.rowcount or 0))  # type: ignore[attr-defined]
            if undone and audit is not None:
                _audit_void_undone(audit, db, row)
            return undone

    # --- queries ---------------------------------------------------------------------

    def tenders(self, session_id: str) -> list[TenderView]:
        """All tenders of a session, oldest first."""
        with self._db() as db:
            rows = db.scalars(sa.select(Tender).where(Tender.session_id == session_id)
                              .order_by(Tender.created_at, Tender.id)).all()
            return [tender_view(row) for row in rows]

    @staticmethod
    def has_tenders(db: Session, session_id: str, states: tuple[str, ...]) -> bool:
        """True when the session has a tender in one of ``states`` (inside ``db``'s transaction)."""
        return db.scalars(sa.select(Tender.id).where(Tender.session_id == session_id,
                                                     Tender.state.in_(states))).first() is not None

    def paid_minor(self, session_id: str) -> int:
        """What the session's tenders paid (cash taken, cards captured)."""
        with self._db() as db:
            return _sum(db, Tender.amount_minor, Tender.session_id == session_id,
                        Tender.state.in_(PAID_STATES))


def _audit_void(audit: Audit | None, db: Session, row: Tender, *,
                before: tuple[str, str | None], actor: str | None = None) -> None:
    """Append the ``tender_voided`` entry of the voided tender ``row`` inside the void's
    write transaction ``db`` (``actor``; None: ``staff:<voided_by>``): :func:`audit_details`, the
    reason, ``voided_minor`` (minor units gone back to the shopper), the refund id
    (card) or the drawer the cash was paid out of, and the tender's state and void state
    before the write (``before``: ``state_before``, ``void_state_before``, e.g.
    ``captured``, ``voiding``) and after it (``state``, ``void_state``: ``voided``).
    Raises what the audit log raises."""
    if audit is None:
        return
    details = {**audit_details(row), "reason": row.void_reason,
               "voided_minor": row.amount_minor, "state_before": before[0],
               "void_state_before": before[1], "state": row.state,
               "void_state": row.void_state}
    if row.kind == "cash":
        details["void_drawer_id"] = row.void_drawer_id
    else:
        details["refund_id"] = row.void_refund_id
    audit.record_in(db, [NewEntry(actor or f"staff:{row.voided_by}", "tender_voided",
                                  f"session:{row.session_id}", details)])


def _audit_void_undone(audit: Audit, db: Session, row: Tender) -> None:
    """Append the ``tender_void_undone`` entry (actor ``reconcile``, subject
    ``session:<id>``) of the card tender ``row``, read while it was ``voiding``, that
    reconciliation put back to paid because the processor has no record of its refund,
    inside that write's transaction ``db``: :func:`audit_details` (``amount_minor``: what
    counts toward the sale again, minor units), the state before and after (``state``
    unchanged, paid; ``void_state_before`` ``voiding``, ``void_state`` None), the void's
    reason and who started it (both dropped from the tender), the refund's idempotency
    key that was looked up and ``outcome`` ``not_voided``. Raises what the audit log
    raises."""
    details = {**audit_details(row), "outcome": "not_voided", "state_before": row.state,
               "state": row.state, "void_state_before": "voiding", "void_state": None,
               "void_reason": row.void_reason, "voided_by": row.voided_by,
               "refund_key": f"void:{row.id}"}
    audit.record_in(db, [NewEntry("reconcile", "tender_void_undone",
                                  f"session:{row.session_id}", details)])


def _audit_lost_race(by: _Auditor, row: Tender, wrote: str | None) -> None:
    """A new tender whose last write lost the compare-and-set to another request of it
    (which recorded what it decided with its own write): record this request's
    ``tender`` entry (the last state it wrote) on its own. Nothing when it was recorded
    with a write, or for a replay or resend. Raises what the audit log raises."""
    if not by.new or by.recorded or by.audit is None or wrote is None:
        return
    by.audit.record(actor=by.actor, action="tender", subject=f"session:{row.session_id}",
                    details=tender_details(audit_details(row), wrote))


_Outcome = tuple[str, str | None, str | None, str | None]
"""A tender's state, failure reason, authorization id and capture id."""


def _outcome(row: Tender) -> _Outcome:
    return row.state, row.failure_reason, row.authorization_id, row.capture_id


def _set_outcome(row: Tender, outcome: _Outcome) -> None:
    row.state, row.failure_reason, row.authorization_id, row.capture_id = outcome


def _authorize_key(row: Tender) -> str:
    """The processor idempotency key of the tender's authorization."""
    return f"tender:{row.id}:authorize"


def _outcome_of(state: str) -> ReconcileOutcome:
    if state in PAID_STATES:
        return "paid"
    return "still_pending" if state in PENDING_STATES else "no_money"


def _resolution(row: Tender, before: str, outcome: ReconcileOutcome) -> TenderResolution:
    view = tender_view(row)
    return TenderResolution(row.id, row.session_id, view.key, row.amount_minor, before,
                            row.state, outcome, row.failure_reason)


def _reserved(db: Session, session_id: str) -> int:
    return _sum(db, Tender.amount_minor, Tender.session_id == session_id,
                Tender.state.in_(PAID_STATES + PENDING_STATES))


def _sum(db: Session, column: Any, *where: sa.ColumnElement[bool]) -> int:
    return int(db.scalar(sa.select(sa.func.coalesce(sa.func.sum(column), 0)).where(*where))
               or 0)


def _check_amount(what: str, amount: int, *, allow_zero: bool) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidInput(f"{what} must be an integer of minor units")
    if amount < (0 if allow_zero else 1) or amount > MAX_AMOUNT_MINOR:
        low = "0" if allow_zero else "1"
        raise InvalidInput(f"{what} must be between {low} and {MAX_AMOUNT_MINOR} minor units, "
                           f"got {amount}")


def token_digest(token: str) -> str:
    """Hex SHA-256 of a processor token (``tenders.payment_token_sha256``)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _check_replay(row: Tender, request: TenderRequest) -> None:
    """Conflict unless ``request`` is the stored tender sent again: same kind, amount and
    till and, for a card, no token or the token the tender was started with. The reason
    says what the key was used for."""
    if (row.kind, row.tendered_minor, row.till_id) != (request.kind, request.amount_minor,
                                                       request.till_id):
        used = _describe(row.kind, row.tendered_minor, row.currency, row.till_id)
        asked = _describe(request.kind, request.amount_minor, request.currency,
                          request.till_id)
        raise Conflict(f"tender key {request.key!r} was already used for another tender: "
                       f"{used} (now {row.state}), not {asked}; a new tender needs a new key")
    if row.kind == "card" and request.payment_token is not None \
            and row.payment_token_sha256 is not None \
            and token_digest(request.payment_token) != row.payment_token_sha256:
        raise Conflict(f"tender key {request.key!r} was started on another card: send it "
                       f"again with the same payment token, or with none to finish it on "
                       f"that card")


def _describe(kind: str, amount_minor: int, currency: str, till_id: str) -> str:
    return f"{kind} {format_minor(amount_minor, currency)} at till {till_id}"


def drawer_cash_minor(db: Session, drawer: CashDrawer) -> int:
    """The cash ``drawer`` is expected to hold now, in minor units: its X report's
    ``expected_cash_minor`` (float plus cash sales less the cash paid back out of it),
    read in ``db``'s transaction. Lock the drawer first (:func:`lock_open_drawer`) when
    paying cash out of it: a payout larger than this is refused by its callers, so the
    drawer never reads negative."""
    return _report(db, drawer, "X").expected_cash_minor


def _last_drawer(db: Session, till_id: str) -> CashDrawer | None:
    """The drawer opened last at ``till_id`` (None: never one)."""
    return db.scalars(sa.select(CashDrawer).where(CashDrawer.till_id == till_id)
                      .order_by(CashDrawer.opened_at.desc(), CashDrawer.id.desc())).first()


def _none_open(till_id: str, last: CashDrawer | None) -> str:
    """The reason given when no drawer is open at ``till_id``."""
    if last is None or last.closed_at is None:
        return f"no cash drawer is open at till {till_id}"
    return (f"no cash drawer is open at till {till_id}: its last drawer {last.id} was "
            f"closed by {last.closed_by} at {last.closed_at.isoformat()}; its Z report is "
            f"kept with the till's drawers")


def _replay_close(db: Session, till_id: str, staff_id: str,
                  counted_minor: int) -> DrawerReport:
    """A Z report sent when no drawer is open at ``till_id``: the stored Z report of the
    till's last drawer when it was closed by ``staff_id`` with ``counted_minor``.
    Raises NotFound (no drawer ever), Conflict (closed with other content)."""
    last = _last_drawer(db, till_id)
    if last is None or last.closed_at is None:
        raise NotFound(_none_open(till_id, last))
    if (last.closed_by, last.counted_minor) != (staff_id, counted_minor):
        counted = format_minor(int(last.counted_minor or 0), last.currency)
        raise Conflict(f"the cash drawer {last.id} at till {till_id} was already closed by "
                       f"{last.closed_by} at {last.closed_at.isoformat()} with {counted} "
                       f"counted; read its Z report with the till's drawers (no drawer is "
                       f"open there now)")
    return _stored_report(db, last)


def _stored_report(db: Session, drawer: CashDrawer) -> DrawerReport:
    """The drawer's Z report once closed, else its X report.

    A closed drawer answers with the Z report stored when it was closed
    (``cash_drawers.z_report``), exactly as given then: a tender voided afterwards, or
    a dispute's cash refund, never changes it. A drawer closed before migration 0012
    has none stored (NULL): its Z report is recomputed from the tenders now, with the
    expected cash as stored at close (``expected_minor``), so its card sales and tender
    count may differ from what was given at close if a tender was voided since."""
    if drawer.closed_at is None:
        return _report(db, drawer, "X")
    if drawer.z_report is not None:
        known = {f.name for f in fields(DrawerReport)}
        return DrawerReport(**{k: v for k, v in drawer.z_report.items() if k in known})
    return _report(db, drawer, "Z")


def _report(db: Session, drawer: CashDrawer, kind: Literal["X", "Z"]) -> DrawerReport:
    mine = Tender.drawer_id == drawer.id
    # Cash taken into the drawer, also of tenders voided later (paid back as a void).
    cash = (mine, Tender.kind == "cash",
            sa.or_(Tender.state == "taken", Tender.void_state == "voided"))
    sales = _sum(db, Tender.amount_minor, *cash)
    refunds = _sum(db, Dispute.cash_refund_minor, Dispute.drawer_id == drawer.id)
    voids = _sum(db, Tender.amount_minor, Tender.void_drawer_id == drawer.id,
                 Tender.kind == "cash", Tender.void_state == "voided")
    expected = drawer.float_minor + sales - refunds - voids
    if kind == "Z" and drawer.expected_minor is not None:
        expected = drawer.expected_minor  # as stored when the drawer was closed
    count = int(db.scalar(sa.select(sa.func.count()).select_from(Tender)
                          .where(mine, Tender.state.in_(PAID_STATES))) or 0)
    counted = drawer.counted_minor if kind == "Z" else None
    return DrawerReport(
        kind=kind, drawer_id=drawer.id, till_id=drawer.till_id, currency=drawer.currency,
        opened_by=drawer.opened_by, opened_at=drawer.opened_at.isoformat(),
        float_minor=drawer.float_minor, cash_sales_minor=sales,
        cash_tendered_minor=_sum(db, Tender.tendered_minor, *cash),
        change_given_minor=_sum(db, Tender.change_minor, *cash), cash_refunds_minor=refunds,
        card_sales_minor=_sum(db, Tender.amount_minor, mine, Tender.kind == "card",
                              Tender.state == "captured"),
        tenders=count, expected_cash_minor=expected,
        closed_by=drawer.closed_by if kind == "Z" else None,
        closed_at=drawer.closed_at.isoformat() if kind == "Z" and drawer.closed_at else None,
        counted_minor=counted, difference_minor=None if counted is None else counted - expected,
        cash_voids_minor=voids)
