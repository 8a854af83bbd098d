"""A session's payment: hold at entry, then at exit capture against it, exactly once.

The ``payments`` row (one per session) and the journal of processor calls
(``storefront.payments.journal``) are the guard: every call is written before it
is made and after it answers, each with an idempotency key derived from the
session id, and a call whose answer was lost is looked up before it is sent
again. A retried or taken-over exit resumes from the stored state: a capture is
never made twice, a hold is not placed twice, and a hold that is not captured
(empty cart, failed capture, staffed checkout) is released.

Paths that reach one payment without the exit's lease (a release of stray holds by
reconciliation, a release racing an exit) are kept apart by the journal: each call
names the payment states it may start from, and a call decided on a state that
another call has since left is not sent (``PaymentBusy``, a ``PaymentPending``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Payment, PaymentOperation
from storefront.errors import PaymentError, StorefrontError
from storefront.payments.balance import unpaid_balance
from storefront.payments.base import Authorization, Operation, PaymentPending, PaymentProcessor
from storefront.payments.journal import IN_FLIGHT_STATES, PaymentJournal, Step
from storefront.payments.orphans import ABANDONED
from storefront.payments.retry import RetryPolicy

_MAX_STEPS = 12  # a charge takes at most ~5 calls; more means a bug, not a loop forever
# The payment states each call may start from (the journal refuses it otherwise); the
# void of a superseded hold acts on another authorization: any rest state will do.
_HOLDING = frozenset({"authorized"})
_EXPECT: dict[str, frozenset[str] | None] = {
    "hold": frozenset({"new"}), "reauthorize": _HOLDING, "adjust": _HOLDING,
    "capture": _HOLDING, "void": _HOLDING, "void_superseded": None}


@dataclass(frozen=True)
class PaymentOutcome:
    """``captured`` True when the amount was taken (or nothing was owed); otherwise
    ``reason`` says why not."""

    captured: bool
    reason: str | None


def _auth_op(auth: Authorization) -> Operation:
    status: Literal["succeeded", "declined"] = (
        "succeeded" if auth.status == "authorized" else "declined")
    return Operation("authorize", auth.authorization_id, status, auth.amount_minor,
                     auth.decline_reason)


class ExitPayment:
    """Hold, adjust or re-authorize, capture and release for one session at a time."""

    def __init__(self, *, sessions: sessionmaker[Session], processor: PaymentProcessor,
                 clock: Clock, retry: RetryPolicy | None = None) -> None:
        self._db = sessions
        self._processor = processor
        self._clock = clock
        self.journal = PaymentJournal(sessions=sessions, processor=processor, clock=clock,
                                      retry=retry or RetryPolicy())

    def hold(self, *, session_id: str, shopper_id: str, token: str, amount_minor: int,
             currency: str) -> PaymentOutcome:
        """Place the entry hold of ``amount_minor``; ``captured`` False with the reason
        when declined or refused. Raises PaymentPending when the outcome is unknown."""
        payment = self._load_or_start(session_id, shopper_id, amount_minor, currency)
        try:
            self._step(payment, token, "hold", amount_minor)
        except PaymentPending:
            raise
        except PaymentError as exc:
            return PaymentOutcome(False, f"payment failed: {exc.reason}")
        payment = self._get(payment.id)
        if payment.state != "authorized":
            return PaymentOutcome(False, payment.failure_reason or payment.state)
        return PaymentOutcome(True, None)

    def charge(self, *, session_id: str, token: str, amount_minor: int, currency: str,
               shopper_id: str | None = None) -> PaymentOutcome:
        """Take ``amount_minor`` for the session from its stored state; never charges twice.

        Without an entry hold the total is authorized first. Raises PaymentPending
        when a call's outcome is still unknown after bounded retries (retry later),
        StorefrontError when the session was captured for another amount.
        """
        payment = self._find(session_id)
        if payment is None:
            if amount_minor == 0:
                return PaymentOutcome(True, None)  # nothing held, nothing owed
            payment = self._load_or_start(session_id, shopper_id, amount_minor, currency)
        for step in range(_MAX_STEPS):
            if step:  # the first round has the row just read
                payment = self._get(payment.id)
            if payment.superseded_ref:
                self._try_void(payment, "void_superseded", payment.superseded_ref)
                continue
            done = self._settled(payment, amount_minor)
            if done is not None:
                return done
            self._advance(payment, token, amount_minor)
        raise StorefrontError(f"payment of session {session_id} did not settle")

    def release(self, *, session_id: str) -> str:
        """Void the session's open hold (the sale goes to staff); returns a note for the
        reason (``""`` when there was no hold to release)."""
        payment = self._find(session_id)
        if payment is None or payment.state not in ("authorized", "voiding"):
            return ""
        return self._try_void(payment, "void", payment.processor_ref or "")

    def release_stray(self, *, session_id: str, superseded_only: bool = False) -> int:
        """Void a superseded hold, or (unless ``superseded_only``) the hold of a session
        that never opened; returns how many holds were released (0 or 1).

        ``superseded_only``: the caller found the payment for its superseded hold; once
        that is released the session's own hold is left alone (its exit may be about to
        capture it). Raises PaymentPending while unknown (PaymentBusy when another call
        on the payment is in flight or moved it on meanwhile).
        """
        payment = self._find(session_id)
        if payment is None:
            return 0
        if payment.superseded_ref:
            note = self._try_void(payment, "void_superseded", payment.superseded_ref)
        elif payment.state == "authorized" and not superseded_only:
            note = self._try_void(payment, "void", payment.processor_ref or "")
        else:
            return 0
        return int(note == "; hold released")

    def owed(self, *, shopper_id: str, now: datetime, grace: timedelta) -> str | None:
        """Why the shopper may not enter (an unpaid balance), or None."""
        return unpaid_balance(self._db, shopper_id=shopper_id, now=now, grace=grace)

    def _settled(self, payment: Payment, total: int) -> PaymentOutcome | None:
        if payment.state == "captured":
            if payment.captured_minor not in (None, total):
                raise StorefrontError(f"session {payment.session_id} was captured for "
                                      f"{payment.captured_minor}, now priced at {total}")
            return PaymentOutcome(True, None)
        if payment.state == "voided" and total == 0 and payment.failure_reason is None:
            return PaymentOutcome(True, None)
        if payment.state == ABANDONED:  # closed unheld: no call starts from it
            if total == 0:
                return PaymentOutcome(True, None)
            return PaymentOutcome(False, payment.failure_reason or
                                  "payment abandoned before any card hold was placed")
        if payment.state in ("declined", "failed", "voided"):
            return PaymentOutcome(False, payment.failure_reason or payment.state)
        return None

    def _advance(self, payment: Payment, token: str, total: int) -> None:
        """Make the next call: resume one in flight, hold, raise the hold, capture or void.

        A refusal (not a decline) is noted as the failure reason; the next round
        then releases the hold.
        """
        try:
            # The journal moves the payment to an in-flight state in the transaction that
            # marks a call in flight, and back in the one that records its answer, so a
            # payment at rest has no call (but refunds, not made here) in flight.
            pending = self._in_flight(payment.id) if payment.state in IN_FLIGHT_STATES \
                else None
            if pending is not None:
                self._step(payment, token, pending.purpose, pending.amount_minor,
                           pending.reference)
            elif payment.state == "new":
                self._step(payment, token, "hold", total)
            elif payment.failure_reason or total == 0:
                self._try_void(payment, "void", payment.processor_ref or "")
            elif total > payment.amount_minor:
                purpose = "adjust" if self._processor.supports_adjust else "reauthorize"
                raised = self._step(payment, token, purpose, total)
                if raised.status == "succeeded" and raised.amount_minor < total:
                    self._set(payment.id, failure_reason="hold increase not applied")
            else:
                self._step(payment, token, "capture", total)
        except PaymentPending:
            raise
        except PaymentError as exc:
            if self._get(payment.id).state == "authorized":
                self._set(payment.id, failure_reason=f"payment failed: {exc.reason}")

    def _step(self, payment: Payment, token: str, purpose: str, amount: int,
              reference: str | None = None) -> Operation:
        sid, ref = payment.session_id, reference or payment.processor_ref or ""
        p = self._processor
        if purpose in ("hold", "reauthorize"):
            key = f"{sid}:authorize" if purpose == "hold" else f"{sid}:reauthorize:{amount}"
            step = Step(purpose, "authorize", key, amount, None, lambda: _auth_op(p.authorize(
                token=token, amount_minor=amount, currency=payment.currency,
                idempotency_key=key)))
        elif purpose == "adjust":
            key = f"{sid}:adjust:{amount}"
            step = Step(purpose, "adjust", key, amount, ref, lambda: _auth_op(p.adjust(
                authorization_id=ref, amount_minor=amount, idempotency_key=key)))
        elif purpose == "capture":
            key = f"{sid}:capture"

            def capture() -> Operation:
                done = p.capture(authorization_id=ref, amount_minor=amount, idempotency_key=key)
                return Operation("capture", done.capture_id, "succeeded", done.amount_minor)
            step = Step(purpose, "capture", key, amount, ref, capture)
        else:
            key = f"{sid}:void:{ref}"

            def void() -> Operation:
                p.void(authorization_id=ref, idempotency_key=key)
                return Operation("void", ref, "succeeded", 0)
            step = Step(purpose, "void", key, 0, ref, void)
        return self.journal.run(payment.id, replace(step, expect=_EXPECT[purpose]))

    def _try_void(self, payment: Payment, purpose: str, ref: str) -> str:
        """Void ``ref``; a refusal is recorded (state failed) rather than raised."""
        try:
            self._step(payment, "", purpose, 0, ref)
        except PaymentPending:
            raise
        except PaymentError as exc:
            if purpose == "void_superseded":  # nothing more we can do: it stays on record
                self._set(payment.id, superseded_ref=None)
            else:
                self._set(payment.id, state="failed", failure_reason=_join(
                    self._get(payment.id).failure_reason, f"hold not released: {exc.reason}"))
            return f"; hold not released: {exc.reason}"
        reason = self._get(payment.id).failure_reason
        if purpose == "void" and reason:
            self._set(payment.id, failure_reason=_join(reason, "hold released"))
        return "; hold released"

    def _load_or_start(self, session_id: str, shopper_id: str | None, amount_minor: int,
                       currency: str) -> Payment:
        found = self._find(session_id)
        if found is not None:
            return found
        now = self._clock()
        try:
            with self._db.begin() as db:
                payment = Payment(id=f"pay_{uuid.uuid4().hex}", session_id=session_id,
                                  idempotency_key=f"{session_id}:payment", state="new",
                                  amount_minor=amount_minor, currency=currency,
                                  shopper_id=shopper_id, refunded_minor=0,
                                  created_at=now, updated_at=now)
                db.add(payment)
                return payment
        except IntegrityError:  # created by a concurrent caller
            found = self._find(session_id)
            if found is None:
                raise
            return found

    def _find(self, session_id: str) -> Payment | None:
        """The session's payment row (detached), or None."""
        with self._db() as db:
            row = db.connection().execute(
                _PAYMENT_BY_KEY, {"key": f"{session_id}:payment"}).mappings().first()
        return None if row is None else Payment(**row)

    def _get(self, payment_id: str) -> Payment:
        """The payment row (detached); raises StorefrontError when it is gone."""
        with self._db() as db:
            row = db.connection().execute(_PAYMENT_BY_ID, {"pid": payment_id}).mappings().first()
        if row is None:
            raise StorefrontError(f"payment {payment_id} vanished")
        return Payment(**row)

    def _in_flight(self, payment_id: str) -> PaymentOperation | None:
        with self._db() as db:
            return db.scalars(sa.select(PaymentOperation).where(
                PaymentOperation.payment_id == payment_id,
                PaymentOperation.state == "in_flight",
                PaymentOperation.purpose != "refund")).first()

    def _note(self, payment_id: str, reason: str) -> None:
        self._set(payment_id, failure_reason=reason)

    def _set(self, payment_id: str, **values: object) -> None:
        with self._db.begin() as db:
            db.execute(sa.update(Payment).where(Payment.id == payment_id)
                       .values(updated_at=self._clock(), **values))


# Constant statements for the reads on every exit's path (see payments.journal).
_PAYMENTS = cast(sa.Table, Payment.__table__)
_PAYMENT_BY_KEY = sa.select(_PAYMENTS).where(
    _PAYMENTS.c.idempotency_key == sa.bindparam("key"))
_PAYMENT_BY_ID = sa.select(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("pid"))


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
