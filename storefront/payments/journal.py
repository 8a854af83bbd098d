"""The payment journal: every processor call is written before it is made and after it
answers, so a crash in mid-call is resolved by asking the processor (``lookup``).

Write-ahead as in a database log (Gray & Reuter, *Transaction Processing*, 1993,
ch. 9): the ``payment_operations`` row (state ``in_flight``) and the payment's
in-flight state are committed before the call; the answer and the payment's new
rest state are committed together after it. A call found ``in_flight`` (a crash,
or an answer lost to a timeout) is looked up before it is ever sent again.

Both commits are durable against power loss as well as a killed process
(:func:`storefront.db.engine.durable_begin`: on SQLite the WAL is synced at each).

One call at a time per payment: the first transaction moves the payment from a rest
state to an in-flight state only if no other call is in flight and the payment is
still in a state the step may start from (``Step.expect``); otherwise nothing is sent
and :class:`PaymentBusy` is raised. Each write of either transaction is a
compare-and-set (``UPDATE ... WHERE state = <the state read>``): on SQLite the reads
run before the write transaction and are not isolated from other writers, so a write
that finds the row changed rolls the transaction back and it is decided again from a
fresh read; on PostgreSQL the reads lock the rows (payment first, then the call), so
the compare always holds. Whichever process or thread races, one call at a time is in
flight for a payment, and an answer is recorded once. A call that
reconciliation recorded as not applied while it was in fact still running is recorded
as answered when its answer arrives, provided nothing was started on the payment since.
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
from storefront.payments.retry import RetryPolicy, resume_or_call

IN_FLIGHT = {"authorize": "authorizing", "adjust": "adjusting", "capture": "capturing",
             "void": "voiding", "refund": "refunding"}


IN_FLIGHT_STATES = frozenset(IN_FLIGHT.values())
# Reads per _begin / finish at most: each retry means another writer changed the row
# (or journaled the key) between the read and the write; a bound against a loop, not a
# tuned value (one retry is all the race tests in tests/integration/test_payment_races.py
# ever need).
_BEGIN_ATTEMPTS = 8


class PaymentBusy(PaymentPending):
    """Nothing was sent: another call on the payment is in flight, or one moved the
    payment out of the state this call was decided on. Read the payment again and decide
    again (an exit retried later does that), or retry the request later."""

    code = "payment_busy"


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
    expect: frozenset[str] | None = None
    """Payment states the call may be started from (None: any rest state)."""


def check_start(payment_state: str, step: Step) -> None:
    """Raise PaymentBusy unless a new call of ``step`` may start on a payment that is in
    ``payment_state`` (a ``payments.state`` value).

    A refund may always start (it leaves the payment's state alone); any other call
    needs the payment at rest (no call in flight) and, when ``step.expect`` is given,
    in one of those states. Pure; the journal applies it inside the transaction that
    marks the call in flight.
    """
    if step.purpose == "refund":
        return
    if payment_state in IN_FLIGHT_STATES:
        raise PaymentBusy(f"{step.purpose} not sent: another call on the payment is in "
                          f"flight ({payment_state}); retry")
    if step.expect is not None and payment_state not in step.expect:
        raise PaymentBusy(f"{step.purpose} not sent: the payment is now {payment_state}, "
                          f"not {' or '.join(sorted(step.expect))}; retry")


def late_answer_applies(op_state: str, purpose: str, payment_state: str,
                        prior_state: str) -> bool:
    """True when the processor's answer to a call should be recorded: the call is in
    flight, or reconciliation recorded it ``not_applied`` (its look-up found nothing:
    the call was slow, not dead) and the payment is still back at ``prior_state`` with
    nothing started since. Refunds are recorded only while in flight. Pure."""
    if op_state == "in_flight":
        return True
    return (op_state == "not_applied" and purpose != "refund"
            and payment_state == prior_state)


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
        PaymentPending when its outcome is still unknown after bounded retries, and
        PaymentBusy (a PaymentPending; nothing sent or journaled) when a new call may not
        start (:func:`check_start`: another call in flight, or not an expected state).
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
            result = resume_or_call(step.call, lookup=lookup, policy=self._retry,
                                    resumed=resumed)
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
        made again) in flight, and the payment in the matching in-flight state, after
        :func:`check_start` (raises PaymentBusy) on the payment's state. A call
        journaled under the same key is returned as it stands. Raises PaymentBusy
        as well when the payment kept changing under it for ``_BEGIN_ATTEMPTS`` reads.
        """
        for _ in range(_BEGIN_ATTEMPTS):
            now = self._clock()
            try:
                with durable_begin(self._engine) as conn:
                    # The payment first (locked on PostgreSQL), then the call by key: a
                    # racing caller with the same key finds it here once it is committed.
                    payment_state = conn.execute(_PAYMENT_STATE, {"pid": payment_id}).scalar()
                    if payment_state is None:
                        raise StorefrontError(f"payment {payment_id} vanished")
                    row = conn.execute(_OP_BY_KEY, {"key": step.key}).mappings().first()
                    if row is not None and row["state"] != "not_applied":
                        return PaymentOperation(**row), row["state"] == "in_flight"
                    check_start(payment_state, step)
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
                        if not _write_changes(conn, _OPS, op, row, compare_state=True):
                            raise _Changed
                    if step.purpose != "refund" and not conn.execute(_PAYMENT_IN_FLIGHT, {
                            "b_id": payment_id, "b_updated_at": now, "b_from": payment_state,
                            "b_state": IN_FLIGHT[step.kind]}).rowcount:
                        raise _Changed
                    return op, False
            except (IntegrityError, _Changed):  # the same key journaled first elsewhere,
                continue  # or the payment moved on since it was read: read it again
        raise PaymentBusy(f"{step.purpose} not sent: the payment kept changing; retry")

    def finish(self, op_id: str, result: Operation | None, *, error: str | None = None,
               not_applied: bool = False) -> None:
        """Record the answer (or ``error``, or that it never took effect) and the
        payment's new state, in one transaction; each write compares the state read.

        Ignored when the call is no longer in flight, except for an answer (``result``)
        to a call that reconciliation recorded not applied while nothing was started on
        the payment since (:func:`late_answer_applies`).
        """
        for _ in range(_BEGIN_ATTEMPTS):
            try:
                self._finish_once(op_id, result, error, not_applied)
                return
            except _Changed:
                continue
        raise StorefrontError(f"payment call {op_id}: its answer could not be recorded "
                              f"while the payment kept changing")

    def _finish_once(self, op_id: str, result: Operation | None, error: str | None,
                     not_applied: bool) -> None:
        with durable_begin(self._engine) as conn:
            payment_id = conn.execute(_PAYMENT_OF_OP, {"op_id": op_id}).scalar()
            if payment_id is None:
                return
            # Payment, then call: the order _begin locks them in (PostgreSQL).
            pay_row = conn.execute(_PAYMENT_BY_ID, {"pid": payment_id}).mappings().first()
            row = conn.execute(_OP_BY_ID, {"op_id": op_id}).mappings().first()
            if pay_row is None or row is None:
                raise StorefrontError(f"payment {payment_id} vanished")
            if row["state"] != "in_flight" and (result is None or not late_answer_applies(
                    row["state"], row["purpose"], pay_row["state"], row["prior_state"])):
                return
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
            if not (_write_changes(conn, _OPS, op, row, compare_state=True)
                    and _write_changes(conn, _PAYMENTS, payment, pay_row, compare_state=True)):
                raise _Changed


class _Changed(Exception):
    """A compare-and-set write found its row changed since it was read: roll back and
    decide again from a fresh read."""


# Constant Core statements on the two tables (rows become detached model objects): the
# journal's two transactions per call are on every exit's path, and the ORM's unit of
# work, or a statement built per call, cost more than the writes themselves. As the
# unit of work did, an update writes only the columns that changed.
_OPS = cast(sa.Table, PaymentOperation.__table__)
_PAYMENTS = cast(sa.Table, Payment.__table__)
_INSERT_OP = sa.insert(_OPS)
_PAYMENT_IN_FLIGHT = (sa.update(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("b_id"),
                                                _PAYMENTS.c.state == sa.bindparam("b_from"))
                      .values(state=sa.bindparam("b_state"),
                              updated_at=sa.bindparam("b_updated_at",
                                                      type_=_PAYMENTS.c.updated_at.type)))
_OP_BY_KEY = sa.select(_OPS).where(_OPS.c.idempotency_key == sa.bindparam("key"))
_PAYMENT_OF_OP = sa.select(_OPS.c.payment_id).where(_OPS.c.id == sa.bindparam("op_id"))
_OP_BY_ID = sa.select(_OPS).where(_OPS.c.id == sa.bindparam("op_id")).with_for_update()
_PAYMENT_BY_ID = (sa.select(_PAYMENTS).where(_PAYMENTS.c.id == sa.bindparam("pid"))
                  .with_for_update())
_PAYMENT_STATE = (sa.select(_PAYMENTS.c.state).where(_PAYMENTS.c.id == sa.bindparam("pid"))
                  .with_for_update())


def _columns(obj: object, table: sa.Table) -> dict[str, Any]:
    return {column.key: getattr(obj, column.key) for column in table.columns}


@functools.cache
def _update_of(table: sa.Table, keys: tuple[str, ...], compare_state: bool) -> sa.Update:
    """UPDATE ``keys`` of one row (parameters ``b_<column>``, WHERE id = ``b_id`` and,
    with ``compare_state``, state = ``w_state``); one statement per column set, built once."""
    where = [table.c.id == sa.bindparam("b_id")]
    if compare_state:
        where.append(table.c.state == sa.bindparam("w_state"))
    return (sa.update(table).where(*where)
            .values({key: sa.bindparam(f"b_{key}", type_=table.c[key].type) for key in keys}))


def _write_changes(conn: sa.Connection, table: sa.Table, obj: object,
                   before: sa.RowMapping, *, compare_state: bool = False) -> bool:
    """UPDATE the columns of ``obj`` that differ from ``before``, the row it was read from;
    with ``compare_state`` only while the row's state is still ``before``'s. Returns
    False when that compare found the row changed (nothing written), else True."""
    changed = {key: value for key, value in _columns(obj, table).items()
               if value != before[key]}
    if not changed:
        return True
    params = {f"b_{key}": value for key, value in changed.items()}
    if compare_state:
        params["w_state"] = before["state"]
    done = conn.execute(_update_of(table, tuple(sorted(changed)), compare_state),
                        {**params, "b_id": before["id"]})
    return not compare_state or bool(done.rowcount)


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

