"""The payment step of the exit flow, resumable from the ``payments`` row.

The row is written before and after every processor call, and each call reuses
an idempotency key derived from the session id. A retried or taken-over exit
reads the row and continues from where the last attempt stopped: a payment
already captured is never captured again, a hold already placed is not placed
twice, and a hold whose capture failed is voided so the shopper is not left
with money reserved while staff take another tender.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Payment
from storefront.errors import PaymentError, StorefrontError
from storefront.payments import PaymentProcessor


@dataclass(frozen=True)
class PaymentOutcome:
    """``captured`` True when the amount was taken; otherwise ``reason`` says why not."""

    captured: bool
    reason: str | None


class ExitPayment:
    """Authorize then capture ``amount_minor`` for one session, exactly once."""

    def __init__(self, *, sessions: sessionmaker[Session], processor: PaymentProcessor,
                 clock: Clock) -> None:
        self._db = sessions
        self._processor = processor
        self._clock = clock

    def charge(self, *, session_id: str, token: str, amount_minor: int,
               currency: str) -> PaymentOutcome:
        """Run the payment of a session from its stored state; never charges twice."""
        payment = self._load_or_start(session_id, amount_minor, currency)
        if payment.state == "captured":
            return PaymentOutcome(True, None)
        if payment.state in ("declined", "failed", "voided"):
            return PaymentOutcome(False, payment.failure_reason or payment.state)
        if payment.amount_minor != amount_minor:
            raise StorefrontError(f"session {session_id} was priced at {payment.amount_minor} "
                                  f"before and at {amount_minor} now")
        if payment.state == "authorizing":
            outcome = self._authorize(payment, session_id, token)
            if outcome is not None:
                return outcome
        return self._capture(payment, session_id)

    def _authorize(self, payment: Payment, session_id: str, token: str) -> PaymentOutcome | None:
        try:
            auth = self._processor.authorize(token=token, amount_minor=payment.amount_minor,
                                             currency=payment.currency,
                                             idempotency_key=f"{session_id}:authorize")
        except PaymentError as exc:
            self._record(payment, "failed", None, f"payment failed: {exc.reason}")
            return PaymentOutcome(False, f"payment failed: {exc.reason}")
        if auth.status != "authorized":
            reason = f"payment declined: {auth.decline_reason}"
            self._record(payment, "declined", auth.authorization_id, reason)
            return PaymentOutcome(False, reason)
        self._record(payment, "authorized", auth.authorization_id, None)
        return None

    def _capture(self, payment: Payment, session_id: str) -> PaymentOutcome:
        auth_id = payment.processor_ref or ""
        try:
            self._processor.capture(authorization_id=auth_id, amount_minor=payment.amount_minor,
                                    idempotency_key=f"{session_id}:capture")
        except PaymentError as exc:
            reason = self._release_hold(payment, session_id, auth_id,
                                        f"payment failed: {exc.reason}")
            return PaymentOutcome(False, reason)
        self._record(payment, "captured", auth_id, None)
        return PaymentOutcome(True, None)

    def _release_hold(self, payment: Payment, session_id: str, auth_id: str,
                      reason: str) -> str:
        """Void the hold after a failed capture; returns the reason as recorded."""
        try:
            self._processor.void(authorization_id=auth_id, idempotency_key=f"{session_id}:void")
        except PaymentError as exc:
            reason = f"{reason}; hold not released: {exc.reason}"
            self._record(payment, "failed", auth_id, reason)
            return reason
        reason = f"{reason}; hold released"
        self._record(payment, "voided", auth_id, reason)
        return reason

    def _load_or_start(self, session_id: str, amount_minor: int, currency: str) -> Payment:
        key = f"{session_id}:payment"
        now = self._clock()
        with self._db.begin() as db:
            found = db.scalars(sa.select(Payment).where(Payment.idempotency_key == key)).first()
            if found is not None:
                return found
            payment = Payment(id=f"pay_{uuid.uuid4().hex}", session_id=session_id,
                              idempotency_key=key, state="authorizing",
                              amount_minor=amount_minor, currency=currency,
                              created_at=now, updated_at=now)
            db.add(payment)
            return payment

    def _record(self, payment: Payment, state: str, ref: str | None,
                failure: str | None) -> None:
        with self._db.begin() as db:
            row = db.get(Payment, payment.id)
            if row is None:
                raise StorefrontError(f"payment {payment.id} vanished")
            row.state, row.updated_at = state, self._clock()
            row.processor_ref = ref or row.processor_ref
            row.failure_reason = failure
        payment.state, payment.processor_ref = state, ref or payment.processor_ref
        payment.failure_reason = failure
