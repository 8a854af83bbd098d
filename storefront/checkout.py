"""Exit flow: close the session, price the cart, authorize and capture, issue a receipt.

Anything uncertain (flagged events, decline, processor failure) sends the
session to the staffed-checkout queue with the reason instead of charging.
Payment state is written before and after each processor call; idempotency
keys are derived from the session id, so a retried exit never charges twice.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from cart.service import SessionService
from cart.session import SessionStatus
from storefront.catalog import Catalogue
from storefront.clock import Clock
from storefront.db.models import Payment, Receipt
from storefront.errors import PaymentError, StorefrontError
from storefront.payments import PaymentProcessor
from storefront.pricing import PricedCart, price_cart
from storefront.sessions import SessionReadModel
from storefront.shoppers import ShopperService


@dataclass(frozen=True)
class ExitResult:
    """Outcome of an exit: ``paid`` with a receipt, or ``staffed`` with the reason."""

    session_id: str
    status: Literal["paid", "staffed"]
    total_minor: int | None
    currency: str
    receipt_id: str | None
    reason: str | None
    lines: tuple[dict[str, object], ...]


class CheckoutService:
    """Runs the exit flow and keeps the staffed-checkout queue."""

    def __init__(self, *, sessions: sessionmaker[Session], carts: SessionService,
                 catalogue: Catalogue, processor: PaymentProcessor, shoppers: ShopperService,
                 read_model: SessionReadModel, currency: str, clock: Clock) -> None:
        self._db = sessions
        self._carts = carts
        self._catalogue = catalogue
        self._processor = processor
        self._shoppers = shoppers
        self._read_model = read_model
        self._currency = currency
        self._clock = clock

    def exit(self, session_id: str) -> ExitResult:
        """Run (or resume) the exit flow of ``session_id``; safe to retry.

        Raises NotFound for an unknown session.
        """
        view = self._read_model.get(session_id)
        state = self._carts.state(session_id)
        if state.status == SessionStatus.OPEN:
            self._carts.exit(session_id)
            self._read_model.update(session_id, status="exited", exited_at=self._clock())
        elif state.status == SessionStatus.SETTLED:
            return self._settled_result(session_id)
        elif state.status == SessionStatus.STAFFED:
            return ExitResult(session_id, "staffed", view.total_minor, self._currency, None,
                              view.staffed_reason, ())
        contents = self._carts.cart(session_id)
        if contents.flags:
            reasons = "; ".join(sorted({flag.reason for flag in contents.flags}))
            return self._to_staffed(session_id, None, f"events need review: {reasons}")
        try:
            priced = price_cart(contents.lines, self._catalogue, self._currency)
        except StorefrontError as exc:
            return self._to_staffed(session_id, None, f"cart cannot be priced: {exc.reason}")
        return self._charge(session_id, view.shopper_id, priced)

    def staffed_queue(self) -> list[dict[str, object]]:
        """Sessions waiting at the staffed checkout, oldest first."""
        return [asdict(view) for view in self._read_model.with_status("staffed")]

    def _charge(self, session_id: str, shopper_id: str, priced: PricedCart) -> ExitResult:
        if priced.total_minor == 0:
            return self._issue_receipt(session_id, shopper_id, priced)
        payment_id = self._payment_started(session_id, priced)
        try:
            auth = self._processor.authorize(
                token=self._shoppers.payment_token(shopper_id), amount_minor=priced.total_minor,
                currency=priced.currency, idempotency_key=f"{session_id}:authorize")
            if auth.status != "authorized":
                self._payment_finished(payment_id, "declined", auth.authorization_id,
                                       auth.decline_reason)
                return self._to_staffed(session_id, priced,
                                        f"payment declined: {auth.decline_reason}")
            self._payment_finished(payment_id, "authorized", auth.authorization_id, None)
            self._processor.capture(authorization_id=auth.authorization_id,
                                    amount_minor=priced.total_minor,
                                    idempotency_key=f"{session_id}:capture")
        except PaymentError as exc:
            self._payment_finished(payment_id, "failed", None, exc.reason)
            return self._to_staffed(session_id, priced, f"payment failed: {exc.reason}")
        self._payment_finished(payment_id, "captured", auth.authorization_id, None)
        return self._issue_receipt(session_id, shopper_id, priced)

    def _payment_started(self, session_id: str, priced: PricedCart) -> str:
        now = self._clock()
        key = f"{session_id}:payment"
        with self._db.begin() as db:
            existing = db.query(Payment).filter_by(idempotency_key=key).one_or_none()
            if existing is not None:
                return existing.id
            payment = Payment(id=f"pay_{uuid.uuid4().hex}", session_id=session_id,
                              idempotency_key=key, state="authorizing",
                              amount_minor=priced.total_minor, currency=priced.currency,
                              created_at=now, updated_at=now)
            db.add(payment)
            return payment.id

    def _payment_finished(self, payment_id: str, state: str, ref: str | None,
                          failure: str | None) -> None:
        with self._db.begin() as db:
            payment = db.get(Payment, payment_id)
            if payment is None:
                raise StorefrontError(f"payment {payment_id} vanished")
            payment.state, payment.updated_at = state, self._clock()
            payment.processor_ref = ref or payment.processor_ref
            payment.failure_reason = failure

    def _issue_receipt(self, session_id: str, shopper_id: str, priced: PricedCart) -> ExitResult:
        lines = tuple(asdict(line) for line in priced.lines)
        with self._db.begin() as db:
            # A retried exit that crashed after the receipt but before settling reuses it.
            receipt = db.query(Receipt).filter_by(session_id=session_id).one_or_none()
            if receipt is None:
                receipt = Receipt(id=f"rct_{uuid.uuid4().hex}", session_id=session_id,
                                  shopper_id=shopper_id, total_minor=priced.total_minor,
                                  currency=priced.currency, lines=list(lines),
                                  issued_at=self._clock())
                db.add(receipt)
            receipt_id = receipt.id
        self._carts.settle(session_id, receipt_id, priced.total_minor)
        self._read_model.update(session_id, status="settled", total_minor=priced.total_minor)
        return ExitResult(session_id, "paid", priced.total_minor, priced.currency, receipt_id,
                          None, lines)

    def _to_staffed(self, session_id: str, priced: PricedCart | None, reason: str) -> ExitResult:
        self._carts.send_to_staffed(session_id, reason)
        total = priced.total_minor if priced else None
        self._read_model.update(session_id, status="staffed", staffed_reason=reason,
                                total_minor=total)
        lines = tuple(asdict(line) for line in priced.lines) if priced else ()
        return ExitResult(session_id, "staffed", total, self._currency, None, reason, lines)

    def _settled_result(self, session_id: str) -> ExitResult:
        with self._db() as db:
            receipt = db.query(Receipt).filter_by(session_id=session_id).one()
            return ExitResult(session_id, "paid", receipt.total_minor, receipt.currency,
                              receipt.id, None, tuple(receipt.lines))
