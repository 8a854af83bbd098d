"""The payment journal: every processor call is written before it is made and after it
answers, so a crash in mid-call is resolved by asking the processor (``lookup``).

Write-ahead as in a database log (Gray & Reuter, *Transaction Processing*, 1993,
ch. 9): the ``payment_operations`` row (state ``in_flight``) and the payment's
in-flight state are committed before the call; the answer and the payment's new
rest state are committed together after it. A call found ``in_flight`` (a crash,
or an answer lost to a timeout) is looked up before it is ever sent again.

Both commits are durable against power loss as well as a killed process
(:func:`storefront.db.engine.durable_begin`: on SQLite the WAL is synced at each).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.engine import bound_engine, durable_begin
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
        self.sessions = sessions
        self._engine = bound_engine(sessions)
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
        """Journal the call (or find it journaled); True when it was already sent.

        One transaction: the operation row (new, or a call that did not take effect
        made again) in flight, and the payment in the matching in-flight state.
        """
        now = self._clock()
        try:
            with durable_begin(self._engine) as conn:
                row = conn.execute(_OP_BY_KEY, {"key": step.key}).mappings().first()
                if row is not None and row["state"] != "not_applied":
                    return PaymentOperation(**row), row["state"] == "in_flight"
                payment_state = conn.execute(_PAYMENT_STATE, {"pid": payment_id}).scalar()
                if payment_state is None:
                    raise StorefrontError(f"payment {payment_id} vanished")
                if row is None:
                    op = PaymentOperation(
                        id=f"pop_{uuid.uuid4().hex}", payment_id=payment_id,
                        purpose=step.purpose, kind=step.kind, idempotency_key=step.key,
                        reference=step.reference, amount_minor=step.amount_minor,
                        state="in_flight", prior_state=payment_state, result_ref=None,
                        error=None, created_at=now, updated_at=now)
                    conn.execute(_INSERT_OP, _columns(op, _OPS))
                else:
                    op = PaymentOperation(**row)
                    op.state, op.updated_at = "in_flight", now
                    if step.purpose != "refund":
                        op.prior_state = payment_state
                    _write_changes(conn, _OPS, op, row)
                if step.purpose != "refund":
                    conn.execute(_PAYMENT_IN_FLIGHT, {"b_id": payment_id, "b_updated_at": now,
                                                      "b_state": IN_FLIGHT[step.kind]})
                return op, False
        except IntegrityError:  # another process journaled the same key first
            return self._begin(payment_id, step)

    def finish(self, op_id: str, result: Operation | None, *, error: str | None = None,
               not_applied: bool = False) -> None:
        """Record the answer (or ``error``, or that it never took effect) and the
        payment's new state, in one transaction; ignored when already recorded."""
        with durable_begin(self._engine) as conn:
            row = conn.execute(_OP_BY_ID, {"op_id": op_id}).mappings().first()
            if row is None or row["state"] != "in_flight":
                return
            pay_row = conn.execute(_PAYMENT_BY_ID, {"pid": row["payment_id"]}).mappings().first()
            if pay_row is None:
                raise StorefrontError(f"payment {row['payment_id']} vanished")
            op, payment = PaymentOperation(**row), Payment(**pay_row)
            op.updated_at = payment.updated_at = self._clock()
            if result is None:
                op.state = "not_applied" if not_applied else "failed"
                op.error = error
                if op.purpose == "hold" and not not_applied:
                    payment.state, payment.failure_reason = "failed", f"payment failed: {error}"
                elif op.purpose != "refund":
                    payment.state = op.prior_state
            else:
                op.state, op.result_ref = result.status, result.reference
                op.amount_minor, op.error = result.amount_minor, result.reason
                _apply(payment, op, result)
            _write_changes(conn, _OPS, op, row)
            _write_changes(conn, _PAYMENTS, payment, pay_row)


# Constant Core statements on the two tables (rows become detached model objects): the
# journal's two transactions per call are on every exit's path, and the ORM's unit of
# work, or a statement built per call, cost more than the writes themselves. As the
# unit of work did, an update writes only the columns that changed.
_OPS = cast(sa.Table, PaymentOperation.__table__)
_PAYMENTS = cast(sa.Table, Payment.__table__)
_INSERT_OP = sa.insert(_OPS)
_PAYMENT_IN_FLIGHT = (sa.update(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("b_id"))
                      .values(state=sa.bindparam("b_state"),
                              updated_at=sa.bindparam("b_updated_at",
                                                      type_=_PAYMENTS.c.updated_at.type)))
_OP_BY_KEY = sa.select(_OPS).where(_OPS.c.idempotency_key == sa.bindparam("key"))
_OP_BY_ID = sa.select(_OPS).where(_OPS.c.id == sa.bindparam("op_id")).with_for_update()
_PAYMENT_BY_ID = (sa.select(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("pid"))
                  .with_for_update())
_PAYMENT_STATE = (sa.select(_PAYMENTS.c.state).where(_PAYMENTS.c.id == sa.bindparam("pid"))
                  .with_for_update())


def _columns(obj: object, table: sa.Table) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in table.columns}


@functools.cache
def _update_of(table: sa.Table, keys: tuple[str, ...]) -> sa.Update:
    """UPDATE ``keys`` of one row (parameters ``b_<column>``, WHERE id = ``b_id``); one
    statement per column set, built once."""
    return (sa.update(table).where(table.c.id == sa.bindparam("b_id"))
            .values({key: sa.bindparam(f"b_{key}", type_=table.c[key].type) for key in keys}))


def _write_changes(conn: sa.Connection, table: sa.Table, obj: object,
                   before: sa.RowMapping) -> None:
    """UPDATE the columns of ``obj`` that differ from ``before``, the row it was read from."""
    changed = {key: value for key, value in _columns(obj, table).items()
               if value != before[key]}
    if changed:
        params = {f"b_{key}": value for key, value in changed.items()}
        conn.execute(_update_of(table, tuple(sorted(changed))), {**params, "b_id": before["id"]})


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

