"""Disputes: a shopper disputes a receipt line -> refund and an amended receipt.

A dispute names the receipt, the product and how much of it (units, or grams
for weighed goods) and carries the client's ``dispute_key``: the same key
again returns the first dispute and never refunds twice (a different content
under the same key is a Conflict). The original receipt is kept; the amended
receipt references the version it replaces.

Refund rule: the disputed quantity leaves the line in proportion, with its
share of the line's promotion saving (``round_half_up``), clamped so that the
line left never costs more than before nor less than nothing (its saving never
exceeds its regular price): a line is never refunded more than it cost. The
refund is the stored total of the receipt's latest version minus the total of
the lines left, taxed (once per category, ``storefront.pricing.tax``) at the
rates the sale was charged at (``storefront.receipts.sale_tax``: the rates
recorded on the lines, or derived from the stored total for receipts without
them), never at today's rates; the amended receipt records those rates on its
lines. It goes back to the card captures of the sale first (through the
processor, one refund per capture, idempotency key ``dispute:<id>:<capture>``,
the state written before and after each call), and only the part that was
paid in cash (cash tenders of the sale less earlier cash refunds) is paid out
of the cash drawer open at ``till_id``, never more than that drawer is expected to
hold (``storefront.till.drawer_cash_minor``, read under the drawer's lock; Conflict
otherwise, nothing stored). A refund larger than what the sale was
paid by card and in cash and not yet refunded is refused (Conflict), never made
up from the drawer. Each card refund of a checkout-free payment is added to its
``payments.refunded_minor`` (what was refunded of that capture) in the transaction
that records it refunded. A
refund interrupted mid-call, or failed, resumes when the same dispute is sent
again. Each card refund is claimed (compare-and-set under the dispute row's lock)
before its call, so two requests of one dispute never both send it, and the
dispute's state never goes back from ``refunded``. Money is integer minor units.

The ``refund`` audit entry (when an ``Audit`` is wired) is written in the transaction
that marks the dispute ``refunded`` (its insert when nothing goes to a card, else the
``refunding`` -> ``refunded`` compare-and-set after the card refunds), so a refunded
dispute never lacks its entry and only the request that moved it there writes one: if
the audit write fails, that transaction rolls back (a dispute without card parts is not
stored; one with them stays ``refunding`` with its card refunds made, and sending it
again marks it refunded with its entry, without refunding again).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import (
    AmendedReceipt,
    CashDrawer,
    Dispute,
    Payment,
    Receipt,
    Tender,
)
from storefront.errors import Conflict, InvalidInput, PaymentError, StorefrontError
from storefront.money import format_minor
from storefront.payments import PaymentProcessor
from storefront.pricing.model import GRAMS_PER_KG, PricedLine, TaxPolicy
from storefront.pricing.rounding import round_half_up
from storefront.receipts import ReceiptStore, stamp_tax, total_of
from storefront.security.audit import Audit, NewEntry
from storefront.security.errors import PermissionDenied
from storefront.till import drawer_cash_minor, lock_open_drawer

# A refund call claimed longer ago than this is presumed dead (its request crashed) and is
# sent again under the same key: the default STOREFRONT_PAYMENT_RECONCILE_AFTER_S, which
# Settings checks exceeds the longest processor call (a value chosen, not measured).
REFUND_CLAIM_TIMEOUT = timedelta(seconds=300)


@dataclass(frozen=True)
class DisputeResult:
    """A dispute and its refund: ``state`` is ``refunded``, or ``refunding`` while a card
    refund is outstanding (send the dispute again to resume); money in minor units."""

    dispute_id: str
    dispute_key: str
    receipt_id: str
    amended_receipt_id: str
    product_code: str
    quantity: int
    reason: str
    state: str
    refund_minor: int
    card_refund_minor: int
    cash_refund_minor: int
    refunds: tuple[dict[str, Any], ...]
    failure_reason: str | None


class DisputeService:
    """Takes disputes of receipt lines, refunds them and issues amended receipts."""

    def __init__(self, *, sessions: sessionmaker[Session], processor: PaymentProcessor,
                 receipts: ReceiptStore, clock: Clock, audit: Audit | None = None,
                 claim_timeout: timedelta = REFUND_CLAIM_TIMEOUT) -> None:
        self._claim_timeout = claim_timeout
        self._db = sessions
        self._audit = audit
        self._processor = processor
        self._receipts = receipts
        self._clock = clock

    def dispute(self, *, receipt_id: str, dispute_key: str, product_code: str, quantity: int,
                reason: str, till_id: str | None = None, actor: str = "system",
                max_refund_minor: int | None = None) -> DisputeResult:
        """Dispute ``quantity`` of ``product_code`` on a receipt (or any version of it).

        Raises:
            NotFound: no such receipt.
            InvalidInput: no reason (or one with control characters), quantity not a
                positive integer or more than is left on the receipt, product not on it,
                a cash part without a till.
            Conflict: the key reused for another dispute (another receipt, product,
                quantity or reason, or its cash part paid out at another till; the
                same dispute sent twice at once answers both with one dispute, or
                asks the later one to retry while the first one's card refund is in
                flight), no drawer open at the till,
                the cash part more than that drawer is expected to hold (nothing is
                stored: a drawer never reads negative),
                another dispute of the receipt landed at the same moment, another
                request of this dispute is making its card refund (retry), the refund
                is more than the sale was paid and not yet refunded, or the receipt's
                tax rates are neither recorded nor derivable from its total while the
                refund depends on them (prices excluding tax).
            PaymentError: a card refund failed (the dispute is kept; send it again).
            PermissionDenied: the refund, added to what earlier disputes of the receipt
                refunded, is over ``max_refund_minor`` (the role's limit): splitting a
                refund into several disputes does not get round the limit.

        The refund is written to the audit log as done by ``actor``, in the transaction
        that marks the dispute refunded (by whichever request of it gets there; a replay
        of a refunded dispute writes nothing). If that audit write fails, its error
        (Conflict or the database's) is raised and the transaction rolled back: send the
        dispute again (a dispute without card parts was not stored; one with them is
        finished with its entry, its card refunds not sent again).
        """
        reason = (reason or "").strip()
        if not 1 <= len(reason) <= 300:
            raise InvalidInput("a reason is required (1-300 characters)")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
            raise InvalidInput("the reason may not contain control characters")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidInput("quantity must be a positive integer (units, or grams)")
        original = self._receipts.get(receipt_id).original_receipt_id
        row = self._by_key(dispute_key)
        if row is None:
            try:
                row = self._open(original, dispute_key, product_code, quantity, reason, till_id,
                                 max_refund_minor, actor)
            except IntegrityError:
                row = self._by_key(dispute_key)
                if row is None:
                    raise Conflict("another dispute of this receipt was just recorded; "
                                   "retry") from None
        self._check_same(row, original, product_code, quantity, reason, till_id)
        if row.state != "refunded":
            row = self._refund(row, actor)
        return _result(row)

    def _check_same(self, row: Dispute, original_id: str, code: str, quantity: int,
                    reason: str, till_id: str | None) -> None:
        """Raise Conflict unless ``row`` (the dispute stored under the key) is this one:
        same receipt, product, quantity and reason, and, when part of it was paid out in
        cash, the same till."""
        key = row.dispute_key
        if (row.receipt_id, row.product_code, row.quantity) != (original_id, code, quantity):
            raise Conflict(f"dispute key {key!r} was already used for another dispute")
        if row.reason != reason:
            raise Conflict(f"dispute key {key!r} was already used with another reason")
        if row.drawer_id is not None:
            with self._db() as db:
                till = db.scalar(sa.select(CashDrawer.till_id)
                                 .where(CashDrawer.id == row.drawer_id))
            if till != till_id:
                raise Conflict(f"dispute key {key!r} was already used with its cash part "
                               f"paid out at till {till}")

    def _by_key(self, key: str) -> Dispute | None:
        with self._db() as db:
            return db.scalars(sa.select(Dispute).where(Dispute.dispute_key == key)).first()

    def _open(self, original_id: str, key: str, code: str, quantity: int, reason: str,
              till_id: str | None, max_refund_minor: int | None, actor: str) -> Dispute:
        now = self._clock()
        with self._db.begin() as db:
            # A no-op write locks the receipt: disputes of one receipt run one at a time.
            db.execute(sa.update(Receipt).where(Receipt.id == original_id)
                       .values(total_minor=Receipt.total_minor))
            # The same dispute sent twice at once: the one that waited on the lock finds
            # the first one's row here and answers with it instead of disputing again.
            stored = db.scalars(sa.select(Dispute).where(Dispute.dispute_key == key)).first()
            if stored is not None:
                db.expunge(stored)
                return stored
            latest = self._receipts.latest(original_id)
            sale = latest.tax_policy
            if sale is None or (latest.tax_basis == "unknown"
                                and not sale.prices_include_tax):
                raise Conflict(f"the tax rates receipt {latest.id} was charged at are not "
                               f"recorded and cannot be derived from its total: the refund "
                               f"cannot be computed; refund it by hand")
            if latest.id != original_id and all(ln.code != code for ln in latest.lines) \
                    and any(ln.code == code for ln in self._receipts.get(original_id).lines):
                raise InvalidInput(f"nothing of product {code} is left to dispute on receipt "
                                   f"{original_id}: earlier disputes refunded all of it")
            amended = _amend(latest.lines, code, quantity)
            after, _ = total_of(amended, sale)
            refund = max(0, latest.total_minor - after)
            _check_limit(db, original_id, refund, max_refund_minor, latest.currency)
            parts = _allocate(refund, _refundable(db, latest.session_id, original_id))
            card = sum(p["amount_minor"] for p in parts)
            cash = refund - card
            cash_left = _cash_refundable(db, latest.session_id, original_id)
            if cash > cash_left:
                raise Conflict(
                    f"a refund of {format_minor(refund, latest.currency)} is more than this "
                    f"sale was paid and not yet refunded "
                    f"({format_minor(card + cash_left, latest.currency)}: "
                    f"{format_minor(card, latest.currency)} by card, "
                    f"{format_minor(cash_left, latest.currency)} in cash)")
            drawer_id = None
            if cash > 0:
                if till_id is None:
                    raise InvalidInput(f"{format_minor(cash, latest.currency)} of the refund "
                                       f"was paid in cash: it is paid out at a till with an "
                                       f"open cash drawer (till_id)")
                drawer = lock_open_drawer(db, till_id)
                if drawer is None:
                    raise Conflict(f"no cash drawer is open at till {till_id}")
                held = drawer_cash_minor(db, drawer)  # under the drawer's lock
                if cash > held:
                    raise Conflict(
                        f"the cash part of the refund, {format_minor(cash, latest.currency)}, "
                        f"is more than the cash drawer at till {till_id} is expected to hold "
                        f"({format_minor(held, drawer.currency)}): nothing was refunded; pay "
                        f"it out at a till whose drawer holds enough cash")
                drawer_id = drawer.id
            dispute_id, amended_id = f"dsp_{uuid.uuid4().hex}", f"rca_{uuid.uuid4().hex}"
            row = Dispute(id=dispute_id, dispute_key=key, receipt_id=original_id,
                          product_code=code, quantity=quantity, reason=reason,
                          state="refunding" if parts else "refunded", refund_minor=refund,
                          cash_refund_minor=cash, drawer_id=drawer_id, refund_parts=parts,
                          amended_receipt_id=amended_id, created_at=now, updated_at=now)
            db.add(row)
            db.add(AmendedReceipt(id=amended_id, original_receipt_id=original_id,
                                  amends_receipt_id=latest.id, dispute_id=dispute_id,
                                  total_minor=latest.total_minor - refund, refund_minor=refund,
                                  currency=latest.currency,
                                  lines=self._stored_lines(amended, sale, latest.tax_basis),
                                  issued_at=now))
            if row.state == "refunded":  # nothing goes to a card: refunded as it is stored
                db.flush()  # a lost race on the key raises here, before the audit write
                self._record_refund(db, row, actor)
        return row

    def _record_refund(self, db: Session, row: Dispute, actor: str) -> None:
        """Append the dispute's ``refund`` entry in ``db``'s transaction, the one that
        marks it refunded (errors of :meth:`Audit.record_in`)."""
        if self._audit is None:
            return
        self._audit.record_in(db, [NewEntry(
            actor, "refund", f"receipt:{row.receipt_id}",
            {"dispute_id": row.id, "product_code": row.product_code,
             "quantity": row.quantity, "refund_minor": row.refund_minor})])

    @staticmethod
    def _stored_lines(lines: tuple[PricedLine, ...], sale: TaxPolicy,
                      basis: str) -> list[dict[str, Any]]:
        """The amended lines as stored: with the sale's rates recorded on them, unless those
        rates are not known (basis ``unknown``), which a later read must not take for
        recorded ones."""
        plain = [asdict(line) for line in lines]
        return plain if basis == "unknown" else stamp_tax(plain, sale)

    def _refund(self, row: Dispute, actor: str) -> Dispute:
        """Make the dispute's outstanding card refunds, each once, then mark it refunded
        with its audit entry (as done by ``actor``).

        Each part is claimed before its call (``pending`` -> ``sending`` with a claim token,
        compare-and-set under the dispute row's lock): a concurrent request for the same
        dispute finds the claim and gets Conflict instead of refunding again; a claim older
        than ``claim_timeout`` (its request died mid-call) is taken over and the refund is
        sent again under the same key. An answer is written only while the claim is still
        this request's, a part once ``refunded`` never goes back, and the dispute goes
        ``refunding`` -> ``refunded`` by ``UPDATE ... WHERE state = 'refunding'``.
        """
        for index in range(len(row.refund_parts)):
            token = uuid.uuid4().hex
            part = self._claim_part(row.id, index, token)
            if part is None:
                continue  # refunded already
            try:
                refund = self._processor.refund(
                    capture_id=part["capture_id"], amount_minor=part["amount_minor"],
                    idempotency_key=f"dispute:{row.id}:{part['capture_id']}")
            except PaymentError as exc:
                self._end_claim(row.id, index, token, None, f"refund failed: {exc.reason}")
                raise PaymentError(f"refund of dispute {row.dispute_key} failed: {exc.reason}; "
                                   f"send the dispute again to retry") from exc
            self._end_claim(row.id, index, token, refund.refund_id, None)
        return self._mark_refunded(row.id, actor)

    def _locked(self, db: Session, dispute_id: str) -> Dispute:
        """The dispute row, read after a no-op write that locks it (the row on PostgreSQL,
        the database's write lock on SQLite), so the read-modify-write that follows in
        ``db``'s transaction is not interleaved with another request's."""
        db.execute(sa.update(Dispute).where(Dispute.id == dispute_id)
                   .values(state=Dispute.state))
        stored = db.scalars(sa.select(Dispute).where(Dispute.id == dispute_id)
                            .execution_options(populate_existing=True)).first()
        if stored is None:
            raise StorefrontError(f"dispute {dispute_id} vanished")
        return stored

    def _claim_part(self, dispute_id: str, index: int, token: str) -> dict[str, Any] | None:
        """Claim part ``index`` for one refund call; None when it is refunded already.
        Raises Conflict while another request's claim on it is live."""
        now = self._clock()
        with self._db.begin() as db:
            stored = self._locked(db, dispute_id)
            parts = [dict(p) for p in stored.refund_parts]
            part = parts[index]
            if part["state"] == "refunded":
                return None
            if part["state"] == "sending" and now - datetime.fromisoformat(
                    part["claimed_at"]) < self._claim_timeout:
                raise Conflict(f"a refund of dispute {stored.dispute_key} is in progress; "
                               f"send it again shortly")
            part.update(state="sending", claim=token, claimed_at=now.isoformat())
            self._write(db, stored, parts, "refunding", stored.failure_reason, now)
            return part

    def _end_claim(self, dispute_id: str, index: int, token: str, refund_id: str | None,
                   failure: str | None) -> None:
        """Record the answer of this request's call on part ``index`` (``refund_id``, or
        ``failure``: back to pending), unless its claim was taken over meanwhile. A part
        recorded refunded adds its amount (minor units) to ``payments.refunded_minor`` of
        the payment whose capture it refunded, in the same transaction: once per part."""
        now = self._clock()
        with self._db.begin() as db:
            stored = self._locked(db, dispute_id)
            parts = [dict(p) for p in stored.refund_parts]
            part = parts[index]
            if part["state"] != "sending" or part.get("claim") != token:
                return
            if refund_id is None:
                part.update(state="pending", claim=None, claimed_at=None)
            else:
                part.update(state="refunded", refund_id=refund_id, claim=None, claimed_at=None)
                db.execute(sa.update(Payment).where(Payment.capture_ref == part["capture_id"])
                           .values(refunded_minor=Payment.refunded_minor
                                   + int(part["amount_minor"])))
            self._write(db, stored, parts, "refunding", failure, now)

    def _mark_refunded(self, dispute_id: str, actor: str) -> Dispute:
        """``refunding`` -> ``refunded`` (compare-and-set) once every part is refunded, with
        the ``refund`` audit entry in the same transaction (only the request that makes
        the move writes it); the stored row either way."""
        now = self._clock()
        with self._db.begin() as db:
            stored = self._locked(db, dispute_id)
            if stored.state == "refunding" and all(
                    p["state"] == "refunded" for p in stored.refund_parts):
                self._write(db, stored, [dict(p) for p in stored.refund_parts], "refunded",
                            None, now)
                db.refresh(stored)  # _write is a Core UPDATE: reload what it wrote
                self._record_refund(db, stored, actor)
            db.expunge(stored)
            return stored

    @staticmethod
    def _write(db: Session, stored: Dispute, parts: list[dict[str, Any]], state: str,
               failure: str | None, now: datetime) -> None:
        """UPDATE the dispute only while it is still in the state read (never from
        ``refunded`` back); raises Conflict when it moved on (the lock makes that a bug)."""
        update = (sa.update(Dispute)
                  .where(Dispute.id == stored.id, Dispute.state == stored.state,
                         Dispute.state != "refunded")
                  .values(refund_parts=parts, state=state, failure_reason=failure,
                          updated_at=now))
        done = cast("CursorResult[Any]", db.execute(update))
        if not done.rowcount:
            raise Conflict(f"dispute {stored.dispute_key} changed meanwhile; send it again")


def _amend(lines: tuple[PricedLine, ...], code: str, quantity: int) -> tuple[PricedLine, ...]:
    """The lines with ``quantity`` of ``code`` taken out (a line left empty is dropped).

    The line left keeps ``left / quantity`` of the regular price (per kg x grams for
    weighed goods) and of the promotion saving, each rounded half up; the saving is then
    clamped to ``[regular - payable before, regular]``, so the line left never costs
    less than nothing nor more than the whole line did (rounding the two separately
    could give a free line a negative amount, i.e. refund money that was never paid).
    Raises InvalidInput: the product is not on the receipt, or less of it is.
    """
    out = []
    found = False
    for line in lines:
        if line.code != code:
            out.append(line)
            continue
        found = True
        if quantity > line.quantity:
            raise InvalidInput(f"only {line.quantity} of {code} is left on the receipt")
        left = line.quantity - quantity
        if left == 0:
            continue
        regular = (round_half_up(line.unit_price_minor * left, GRAMS_PER_KG)
                   if line.sold_by_weight else line.unit_price_minor * left)
        discount = round_half_up(line.discount_minor * left, line.quantity)
        discount = min(regular, max(discount, regular - line.payable_minor))
        out.append(replace(line, quantity=left, line_total_minor=regular,
                           discount_minor=discount, payable_minor=regular - discount))
    if not found:
        raise InvalidInput(f"product {code} is not on the receipt")
    return tuple(out)


def _refundable(db: Session, session_id: str, original_id: str) -> list[tuple[str, int]]:
    """(capture id, amount still refundable) of the sale's card captures, oldest first.

    A checkout-free payment's capture less what was refunded of it: the larger of its
    ``refunded_minor`` (every refund recorded on it, disputes' card refunds included) and
    the refunded parts of the receipt's disputes (refunds made before the column was
    kept), less the parts still to be sent. A staffed card tender's capture less every
    part of the receipt's disputes on it. Minor units.

    Read consistently: ``_end_claim`` moves a part to ``refunded`` and adds it to its
    payment's ``refunded_minor`` in one commit, under the dispute row's lock. The
    receipt's disputes are locked here first (a no-op write: the rows on PostgreSQL,
    the database's write lock on SQLite), so no such commit lands between the reads
    below, and both reads run after the lock (each statement sees every commit made
    before it). Otherwise a commit between the two reads counts its part twice (read
    pending in the disputes, then in ``refunded_minor``) or, read the other way round,
    not at all when ``refunded_minor`` also holds refunds made outside disputes.
    ``populate_existing``: rows loaded earlier in ``db`` are read again, never stale."""
    db.execute(sa.update(Dispute).where(Dispute.receipt_id == original_id)
               .values(state=Dispute.state))
    fresh = {"populate_existing": True}
    payments = list(db.scalars(sa.select(Payment).where(Payment.session_id == session_id,
                                                        Payment.state == "captured")
                               .order_by(Payment.created_at).execution_options(**fresh)))
    done: dict[str, int] = {}
    owed: dict[str, int] = {}
    for dispute in db.scalars(sa.select(Dispute).where(Dispute.receipt_id == original_id)
                              .execution_options(**fresh)):
        for part in dispute.refund_parts:
            into = done if part["state"] == "refunded" else owed
            into[part["capture_id"]] = into.get(part["capture_id"], 0) + part["amount_minor"]
    captures: list[tuple[str, int]] = []
    for pay in payments:
        ref = getattr(pay, "capture_ref", None)
        if not ref:
            raise Conflict(f"the capture of payment {pay.id} is not recorded: "
                           f"it cannot be refunded to the card")
        refunded = max(int(getattr(pay, "refunded_minor", 0) or 0), done.get(ref, 0))
        captures.append((ref, (getattr(pay, "captured_minor", None) or pay.amount_minor)
                         - refunded - owed.get(ref, 0)))
    for tender in db.scalars(sa.select(Tender).where(Tender.session_id == session_id,
                                                     Tender.state == "captured")
                             .order_by(Tender.created_at, Tender.id)):
        ref = tender.capture_id or ""
        captures.append((ref, tender.amount_minor - done.get(ref, 0) - owed.get(ref, 0)))
    return captures


def _cash_refundable(db: Session, session_id: str, original_id: str) -> int:
    """What the sale took in cash (cash tenders, net of change) less the cash refunds of
    earlier disputes of the receipt: the most a cash refund may pay out."""
    taken = db.scalar(sa.select(sa.func.coalesce(sa.func.sum(Tender.amount_minor), 0))
                      .where(Tender.session_id == session_id, Tender.kind == "cash",
                             Tender.state == "taken")) or 0
    paid_out = db.scalar(sa.select(sa.func.coalesce(sa.func.sum(Dispute.cash_refund_minor), 0))
                         .where(Dispute.receipt_id == original_id)) or 0
    return max(0, int(taken) - int(paid_out))


def _allocate(refund: int, captures: list[tuple[str, int]]) -> list[dict[str, Any]]:
    parts = []
    left = refund
    for capture_id, available in captures:
        take = min(left, available)
        if take > 0:
            parts.append({"capture_id": capture_id, "amount_minor": take,
                          "state": "pending", "refund_id": None})
            left -= take
    return parts


def _result(row: Dispute) -> DisputeResult:
    return DisputeResult(row.id, row.dispute_key, row.receipt_id, row.amended_receipt_id,
                         row.product_code, row.quantity, row.reason, row.state,
                         row.refund_minor, row.refund_minor - row.cash_refund_minor,
                         row.cash_refund_minor, tuple(row.refund_parts), row.failure_reason)



def _check_limit(db: Session, receipt_id: str, refund: int, limit: int | None,
                 currency: str) -> None:
    """PermissionDenied when ``refund`` plus the receipt's earlier refunds exceed ``limit``."""
    if limit is None:
        return
    earlier = db.scalar(sa.select(sa.func.coalesce(sa.func.sum(Dispute.refund_minor), 0))
                        .where(Dispute.receipt_id == receipt_id)) or 0
    if refund + earlier > limit:
        already = (f" (with {format_minor(earlier, currency)} refunded on this receipt "
                   f"before)" if earlier else "")
        raise PermissionDenied(f"a refund of {format_minor(refund, currency)}{already} is over "
                               f"your limit of {format_minor(limit, currency)}: ask a manager")
