"""Disputes: a shopper disputes a receipt line -> refund and an amended receipt.

A dispute names the receipt, the product and how much of it (units, or grams
for weighed goods) and carries the client's ``dispute_key``: the same key
again returns the first dispute and never refunds twice (a different content
under the same key is a Conflict). The original receipt is kept; the amended
receipt references the version it replaces.

Refund rule: the disputed quantity leaves the line in proportion, with its
share of the line's promotion saving (``round_half_up``); the refund is the
receipt total recomputed before minus after (tax recomputed once per category,
``storefront.pricing.tax``). It goes back to the card captures of the sale
first (through the processor, one refund per capture, idempotency key
``dispute:<id>:<capture>``, the state written before and after each call), and
any part paid in cash is paid out of the cash drawer open at ``till_id``. A
refund interrupted mid-call, or failed, resumes when the same dispute is sent
again. Money is integer minor units.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import AmendedReceipt, Dispute, Payment, Receipt, Tender
from storefront.errors import Conflict, InvalidInput, PaymentError, StorefrontError
from storefront.money import format_minor
from storefront.payments import PaymentProcessor
from storefront.pricing.model import GRAMS_PER_KG, PricedLine
from storefront.pricing.rounding import round_half_up
from storefront.receipts import ReceiptStore, total_of
from storefront.security.audit import Audit
from storefront.security.errors import PermissionDenied
from storefront.till import lock_open_drawer


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
                 receipts: ReceiptStore, clock: Clock, audit: Audit | None = None) -> None:
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
            Conflict: the key reused for another dispute, no drawer open at the till,
                another dispute of the receipt landed at the same moment (retry).
            PaymentError: a card refund failed (the dispute is kept; send it again).
            PermissionDenied: the refund, added to what earlier disputes of the receipt
                refunded, is over ``max_refund_minor`` (the role's limit): splitting a
                refund into several disputes does not get round the limit.

        The refund is written to the audit log as done by ``actor``.
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
        done_before = row is not None and row.state == "refunded"
        if row is None:
            try:
                row = self._open(original, dispute_key, product_code, quantity, reason, till_id,
                                 max_refund_minor)
            except IntegrityError:
                row = self._by_key(dispute_key)
                if row is None:
                    raise Conflict("another dispute of this receipt was just recorded; "
                                   "retry") from None
        if (row.receipt_id, row.product_code, row.quantity) != (original, product_code,
                                                                quantity):
            raise Conflict(f"dispute key {dispute_key!r} was already used for another dispute")
        if row.state != "refunded":
            row = self._refund(row)
        if not done_before and self._audit is not None:
            self._audit.record(actor=actor, action="refund", subject=f"receipt:{original}",
                               details={"dispute_id": row.id, "product_code": product_code,
                                        "quantity": quantity, "refund_minor": row.refund_minor})
        return _result(row)

    def _by_key(self, key: str) -> Dispute | None:
        with self._db() as db:
            return db.scalars(sa.select(Dispute).where(Dispute.dispute_key == key)).first()

    def _open(self, original_id: str, key: str, code: str, quantity: int, reason: str,
              till_id: str | None, max_refund_minor: int | None) -> Dispute:
        policy = self._receipts.policy()
        now = self._clock()
        with self._db.begin() as db:
            # A no-op write locks the receipt: disputes of one receipt run one at a time.
            db.execute(sa.update(Receipt).where(Receipt.id == original_id)
                       .values(total_minor=Receipt.total_minor))
            latest = self._receipts.latest(original_id)
            amended = _amend(latest.lines, code, quantity)
            before, _ = total_of(latest.lines, policy)
            after, _ = total_of(amended, policy)
            refund = max(0, before - after)
            _check_limit(db, original_id, refund, max_refund_minor, latest.currency)
            parts = _allocate(refund, _refundable(db, latest.session_id, original_id))
            cash = refund - sum(p["amount_minor"] for p in parts)
            drawer_id = None
            if cash > 0:
                if till_id is None:
                    raise InvalidInput(f"{format_minor(cash, latest.currency)} of the refund "
                                       f"was paid in cash: it is paid out at a till with an "
                                       f"open cash drawer (till_id)")
                drawer = lock_open_drawer(db, till_id)
                if drawer is None:
                    raise Conflict(f"no cash drawer is open at till {till_id}")
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
                                  lines=[asdict(line) for line in amended], issued_at=now))
        return row

    def _refund(self, row: Dispute) -> Dispute:
        parts = [dict(p) for p in row.refund_parts]
        for part in parts:
            if part["state"] == "refunded":
                continue
            try:
                refund = self._processor.refund(
                    capture_id=part["capture_id"], amount_minor=part["amount_minor"],
                    idempotency_key=f"dispute:{row.id}:{part['capture_id']}")
            except PaymentError as exc:
                self._save(row, parts, "refunding", f"refund failed: {exc.reason}")
                raise PaymentError(f"refund of dispute {row.dispute_key} failed: {exc.reason}; "
                                   f"send the dispute again to retry") from exc
            part.update(state="refunded", refund_id=refund.refund_id)
            self._save(row, parts, "refunding", None)
        return self._save(row, parts, "refunded", None)

    def _save(self, row: Dispute, parts: list[dict[str, Any]], state: str,
              failure: str | None) -> Dispute:
        with self._db.begin() as db:
            stored = db.get(Dispute, row.id)
            if stored is None:
                raise StorefrontError(f"dispute {row.id} vanished")
            stored.refund_parts = [dict(p) for p in parts]
            stored.state, stored.failure_reason = state, failure
            stored.updated_at = self._clock()
            db.flush()
            db.expunge(stored)
            return stored


def _amend(lines: tuple[PricedLine, ...], code: str, quantity: int) -> tuple[PricedLine, ...]:
    """The lines with ``quantity`` of ``code`` taken out (a line left empty is dropped)."""
    out = []
    found = False
    for line in lines:
        if line.code != code:
            out.append(line)
            continue
        found = True
        if quantity > line.quantity:
            raise InvalidInput(f"only {line.quantity} of {code} is on the receipt")
        left = line.quantity - quantity
        if left == 0:
            continue
        regular = (round_half_up(line.unit_price_minor * left, GRAMS_PER_KG)
                   if line.sold_by_weight else line.unit_price_minor * left)
        discount = round_half_up(line.discount_minor * left, line.quantity)
        out.append(replace(line, quantity=left, line_total_minor=regular,
                           discount_minor=discount, payable_minor=regular - discount))
    if not found:
        raise InvalidInput(f"product {code} is not on the receipt")
    return tuple(out)


def _refundable(db: Session, session_id: str, original_id: str) -> list[tuple[str, int]]:
    """(capture id, amount still refundable) of the sale's card captures, oldest first."""
    captures: list[tuple[str, int]] = []
    for pay in db.scalars(sa.select(Payment).where(Payment.session_id == session_id,
                                                   Payment.state == "captured")
                          .order_by(Payment.created_at)):
        ref = getattr(pay, "capture_ref", None)
        if not ref:
            raise Conflict(f"the capture of payment {pay.id} is not recorded: "
                           f"it cannot be refunded to the card")
        amount = (getattr(pay, "captured_minor", None) or pay.amount_minor) \
            - int(getattr(pay, "refunded_minor", 0) or 0)
        captures.append((ref, amount))
    for tender in db.scalars(sa.select(Tender).where(Tender.session_id == session_id,
                                                     Tender.state == "captured")
                             .order_by(Tender.created_at, Tender.id)):
        captures.append((tender.capture_id or "", tender.amount_minor))
    used: dict[str, int] = {}
    for dispute in db.scalars(sa.select(Dispute).where(Dispute.receipt_id == original_id)):
        for part in dispute.refund_parts:
            used[part["capture_id"]] = used.get(part["capture_id"], 0) + part["amount_minor"]
    return [(ref, amount - used.get(ref, 0)) for ref, amount in captures]


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
