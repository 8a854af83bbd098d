"""The payment journal: every processor call is written before it is made and after it
answers, so a crash in mid-call is resolved by asking the processor (``lookup``).

Write-ahead as in a database log (Gray & Reuter, *Transaction Processing*, 1993,
ch. 9): the ``payment_operations`` row (state ``in_flight``) and the payment's
in-flight state are committed before the call; the answer and the payment's new
rest state are committed together after it. A call found ``in_flight`` (a crash,
or an answer lost to a timeout) is looked up before it is ever sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Payment, PaymentOperation
from storefront.errors import PaymentError, StorefrontError
from storefront.payments.base import (
    Operation,
    OperationKind,
    PaymentPending,
    PaymentProcessor,
    ProcessorUnavailable,
)
from storefront.payments.retry import RetryPolicy, call_with_retry

IN_FLIGHT = {"authorize": "authorizing", "adjust": "adjusting", "capture": "capturing",
             "void": "voiding", "refund": "refunding"}


@dataclass(frozen=True)
class Step:
    """One processor call to journal: ``purpose`` says what it is for (hold, reauthorize,
    adjust, capture, void, void_superseded, refund); ``reference`` is the authorization
    (or capture, for refunds) it acts on."""

    purpose: str
    kind: OperationKind
    key: str
    amount_minor: int
    reference: str | None
    call: Callable[[], Operation]


class PaymentJournal:
    """Runs journaled processor calls against one ``payments`` row at a time."""

    def __init__(self, *, sessions: sessionmaker[Session], processor: PaymentProcessor,
                 clock: Clock, retry: RetryPolicy) -> None:
        self._db = self.sessions = sessions
        self.processor = processor
        self._clock = clock
        self._retry = self.retry = retry

    def run(self, payment_id: str, step: Step) -> Operation:
        """Make (or resume) the call of ``step`` once; returns what the processor did.

        Raises PaymentError when the processor refused it (recorded as ``failed``),
        PaymentPending when its outcome is still unknown after bounded retries.
        """
        op, resumed = self._begin(payment_id, step)
        if op.state in ("succeeded", "declined"):
            return _stored(op)
        if op.state == "failed":
            raise PaymentError(op.error or "refused by the processor")

        def lookup() -> Operation | None:
            return self.processor.lookup(kind=step.kind, idempotency_key=step.key,
                                         reference=step.reference)

        try:
            found = call_with_retry(lookup, lookup=lookup, policy=self._retry) \
                if resumed else None
            result = found or call_with_retry(step.call, lookup=lookup, policy=self._retry)
        except ProcessorUnavailable as exc:
            raise PaymentPending(f"{step.purpose} outcome unknown: {exc.reason}") from exc
        except PaymentError as exc:
            self.finish(op.id, None, error=exc.reason)
            raise
        self.finish(op.id, result)
        return result

    def _begin(self, payment_id: str, step: Step) -> tuple[PaymentOperation, bool]:
        """Journal the call (or find it journaled); True when it was already sent."""
        now = self._clock()
        try:
            with self._db.begin() as db:
                found = db.scalars(sa.select(PaymentOperation).where(
                    PaymentOperation.idempotency_key == step.key)).first()
                if found is not None and found.state != "not_applied":
                    return found, found.state == "in_flight"
                payment = _payment(db, payment_id)
                if found is None:
                    found = PaymentOperation(
                        id=f"pop_{uuid.uuid4().hex}", payment_id=payment_id,
                        purpose=step.purpose, kind=step.kind, idempotency_key=step.key,
                        reference=step.reference, amount_minor=step.amount_minor,
                        created_at=now, prior_state=payment.state)
                    db.add(found)
                found.state, found.updated_at = "in_flight", now
                if step.purpose != "refund":
                    found.prior_state = payment.state
                    payment.state, payment.updated_at = IN_FLIGHT[step.kind], now
                return found, False
        except IntegrityError:  # another process journaled the same key first
            return self._begin(payment_id, step)

    def finish(self, op_id: str, result: Operation | None, *, error: str | None = None,
               not_applied: bool = False) -> None:
        """Record the answer (or ``error``, or that it never took effect) and the
        payment's new state, in one transaction; ignored when already recorded."""
        with self._db.begin() as db:
            op = db.get(PaymentOperation, op_id, with_for_update=True)
            if op is None or op.state != "in_flight":
                return
            payment = _payment(db, op.payment_id)
            op.updated_at = payment.updated_at = self._clock()
            if result is None:
                op.state = "not_applied" if not_applied else "failed"
                op.error = error
                if op.purpose == "hold" and not not_applied:
                    payment.state, payment.failure_reason = "failed", f"payment failed: {error}"
                elif op.purpose != "refund":
                    payment.state = op.prior_state
                return
            op.state, op.result_ref = result.status, result.reference
            op.amount_minor, op.error = result.amount_minor, result.reason
            _apply(payment, op, result)


def _apply(payment: Payment, op: PaymentOperation, result: Operation) -> None:
    """The payment's rest state after a call that the processor carried out."""
    state = op.prior_state
    if op.kind == "authorize":
        if result.status == "succeeded":
            if op.purpose == "reauthorize" and payment.processor_ref:
                payment.superseded_ref = payment.processor_ref
            payment.processor_ref, payment.amount_minor = result.reference, result.amount_minor
            state = "authorized"
        elif op.purpose == "hold":
            state = "declined"
            payment.processor_ref = result.reference
            payment.failure_reason = f"payment declined: {result.reason or 'declined'}"
        else:
            payment.failure_reason = f"re-authorization declined: {result.reason or 'declined'}"
    elif op.kind == "adjust":
        if result.status == "succeeded":
            payment.amount_minor = result.amount_minor
        else:
            payment.failure_reason = f"hold increase declined: {result.reason or 'declined'}"
    elif op.kind == "capture":
        state = "captured"
        payment.captured_minor, payment.capture_ref = result.amount_minor, result.reference
    elif op.kind == "void":
        if op.purpose == "void_superseded":
            payment.superseded_ref = None
        else:
            state = "voided"
    elif op.kind == "refund":
        payment.refunded_minor = (payment.refunded_minor or 0) + result.amount_minor
    if op.purpose != "refund":
        payment.state = state


def _stored(op: PaymentOperation) -> Operation:
    status: Literal["succeeded", "declined"] = (
        "declined" if op.state == "declined" else "succeeded")
    kind: OperationKind = op.kind  # type: ignore[assignment]
    return Operation(kind, op.result_ref or "", status, op.amount_minor, op.error)


def _payment(db: Session, payment_id: str) -> Payment:
    payment = db.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise StorefrontError(f"payment {payment_id} vanished")
    return payment
