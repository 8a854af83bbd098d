"""Reconciliation: settle processor calls left in flight by a crash, by asking the processor.

Run at start-up (``bootstrap``) and by ``storefront payments reconcile``. A call
journaled ``in_flight`` for longer than ``older_than`` is presumed orphaned (its
process died, or its answer was lost); the processor is asked what became of it
(by idempotency key or by the authorization it acted on) and the answer is
recorded as if it had arrived. Holds left behind are released: a hold placed for
a session that never opened (the gate died between the hold and the session),
and a hold superseded by a re-authorization.

What it may touch while another process is live (the exit takes no lease for the
stray-hold release): a call in flight for longer than ``older_than`` is looked up,
never sent; inside a live exit lease it is left alone (``busy``). Past the lease,
or for an entry hold (no session, so no lease), a look-up may find nothing because
the call is slow rather than dead: it is recorded ``not_applied`` and the slow call's
answer, when it arrives, still counts (``PaymentJournal.finish``). A superseded hold
is released by its own void only, never the session's current hold, and the hold of
a session that never opened only once it has been at rest for ``older_than``; the
journal refuses any void that meets another call in flight (``PaymentBusy``: counted
by the next run).

Card tenders of the staffed checkout left pending (``authorizing``/``authorized``: a
crash or a timeout in mid-call) are settled too when a ``till`` is given
(``storefront payments reconcile`` gives it): each tender at rest for longer than
``older_than`` is looked up under its own keys and recorded paid (captured) or failed
(no money), with the tender path's compare-and-set (``Till.reconcile_pending``).
Card tenders left ``voiding`` (the void's refund was sent under ``void:<tender id>`` and
its outcome never recorded) for longer than ``older_than`` are settled as well: the refund
is looked up (never sent), and the tender recorded ``voided`` when the processor has it,
back to paid when it has no record, left for the next run when it cannot answer
(``Till.reconcile_voiding``).

Every change it makes to a tender is audited (actor ``reconcile``, subject
``session:<id>``) in the transaction that writes it: ``tender_settled`` (pending to
captured or failed), ``hold_released``, ``tender_voided`` (voiding to voided) and
``tender_void_undone`` (voiding back to paid); the entries carry the tender id and the
amounts in minor units, and those of a state change the states before and after
(``storefront.till``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Payment, PaymentOperation, ShoppingSession
from storefront.errors import PaymentError
from storefront.exit_payment import ExitPayment
from storefront.payments.base import (
    Operation,
    OperationKind,
    PaymentProcessor,
    ProcessorUnavailable,
)
from storefront.payments.retry import call_with_retry
from storefront.sessions import SessionReadModel

if TYPE_CHECKING:
    from storefront.till import TenderResolution, Till, VoidResolution


@dataclass
class ReconcileReport:
    """Counts of one reconciliation run.

    The first six count the exit flow's journaled calls. ``tenders_*`` count the
    staffed checkout's pending card tenders: looked up at the processor, now paid
    (captured: the amount counts toward the sale), with no money (failed, declined or
    voided: the sale can take another tender), still pending (the processor could not
    say), and busy (another request was working on the tender: left to it);
    ``tenders_late_holds_released``: holds that reached the processor after their tender
    was recorded failed, now voided (``Till.release_late_holds``).
    ``tenders`` says what was done with each one (``storefront.till.TenderResolution``).
    ``voids_*`` count the card tenders left ``voiding``: looked up, now ``voided`` (the
    processor has the refund), ``not_voided`` (it has no record: the tender is paid
    again), still voiding (it could not answer) and busy (a resend of the void was
    working on it); ``voids`` says what was done with each one
    (``storefront.till.VoidResolution``).
    """

    looked_up: int = 0
    completed: int = 0
    not_applied: int = 0
    still_unknown: int = 0
    busy: int = 0
    holds_released: int = 0
    tenders_looked_up: int = 0
    tenders_paid: int = 0
    tenders_no_money: int = 0
    tenders_still_pending: int = 0
    tenders_busy: int = 0
    tenders_late_holds_released: int = 0
    tenders: list[TenderResolution] = field(default_factory=list)
    voids_looked_up: int = 0
    voids_voided: int = 0
    voids_not_voided: int = 0
    voids_still_voiding: int = 0
    voids_busy: int = 0
    voids: list[VoidResolution] = field(default_factory=list)

    def add_tenders(self, resolutions: list[TenderResolution]) -> None:
        """Count and keep what reconciliation did with the pending card tenders."""
        self.tenders.extend(resolutions)
        for done in resolutions:
            self.tenders_looked_up += done.outcome != "busy"
            self.tenders_paid += done.outcome == "paid"
            self.tenders_no_money += done.outcome == "no_money"
            self.tenders_still_pending += done.outcome == "still_pending"
            self.tenders_busy += done.outcome == "busy"

    def add_voids(self, resolutions: list[VoidResolution]) -> None:
        """Count and keep what reconciliation did with the card tenders left voiding."""
        self.voids.extend(resolutions)
        for done in resolutions:
            self.voids_looked_up += done.outcome != "busy"
            self.voids_voided += done.outcome == "voided"
            self.voids_not_voided += done.outcome == "not_voided"
            self.voids_still_voiding += done.outcome == "still_voiding"
            self.voids_busy += done.outcome == "busy"


def reconcile(*, payment: ExitPayment, read_model: SessionReadModel, clock: Clock,
              older_than: timedelta, lease: timedelta,
              till: Till | None = None, take_over_leases: bool = False) -> ReconcileReport:
    """Resolve orphaned in-flight calls and release stray holds; returns the counts.

    A session whose exit is running elsewhere (live lease) is left alone
    (``busy``); a call the processor cannot answer about now stays in flight
    (``still_unknown``) for the next run or the next exit retry. With ``till``, the
    staffed checkout's card tenders pending for longer than ``older_than`` are settled
    as well (``Till.reconcile_pending``; counted in ``tenders_*``), and the card tenders
    left ``voiding`` as long (``Till.reconcile_voiding``; counted in ``voids_*``).
    Raises ValueError for a negative ``older_than`` when ``till`` is given.
    ``take_over_leases``: every exit lease is a dead process's (start-up of the only
    process, ``payment_reconcile_after_s`` 0): taken over however fresh, not ``busy``.
    """
    report = ReconcileReport()
    resolved: set[str] = set()  # payments whose orphaned call this run found done
    journal, db = payment.journal, payment.journal.sessions
    cutoff = clock() - older_than
    with db() as s:
        ops = s.execute(sa.select(PaymentOperation, Payment.session_id)
                        .join(Payment, Payment.id == PaymentOperation.payment_id)
                        .where(PaymentOperation.state == "in_flight",
                               PaymentOperation.updated_at < cutoff)).all()
    for op, session_id in ops:
        token = uuid.uuid4().hex
        claimed = _claim(journal.sessions, read_model, session_id, token, clock,
                         timedelta(0) if take_over_leases else lease)
        if claimed is False:
            report.busy += 1
            continue
        try:
            report.looked_up += 1
            lookup = _lookup_of(journal.processor, op)
            found = call_with_retry(lookup, lookup=lookup, policy=journal.retry)
        except ProcessorUnavailable:
            report.still_unknown += 1
            continue
        finally:
            if claimed:
                read_model.release_exit(session_id, token)
        journal.finish(op.id, found, not_applied=found is None)
        report.completed += found is not None
        report.not_applied += found is None
        if found is not None:
            resolved.add(op.payment_id)
    report.holds_released = _release_stray_holds(payment, cutoff, resolved)
    if till is not None:
        report.add_tenders(till.reconcile_pending(older_than=older_than))
        report.tenders_late_holds_released = till.release_late_holds()
        report.add_voids(till.reconcile_voiding(older_than=older_than))
    return report


def _claim(db: sessionmaker[Session], read_model: SessionReadModel, session_id: str,
           token: str, clock: Clock, lease: timedelta) -> bool | None:
    """True: exit lease taken; False: another process holds it; None: no exit to guard
    (no such session, or it is already settled or at the staffed checkout)."""
    with db() as s:
        status = s.scalar(sa.select(ShoppingSession.status)
                          .where(ShoppingSession.id == session_id))
    if status is None or status in ("settled", "staffed"):
        return None
    return read_model.claim_exit(session_id, token, clock(), lease)


def _lookup_of(processor: PaymentProcessor,
               op: PaymentOperation) -> Callable[[], Operation | None]:
    kind: OperationKind = op.kind  # type: ignore[assignment]

    def lookup() -> Operation | None:
        return processor.lookup(kind=kind, idempotency_key=op.idempotency_key,
                                reference=op.reference)
    return lookup


def _release_stray_holds(payment: ExitPayment, cutoff: datetime,
                         resolved: set[str]) -> int:
    """Void holds of sessions that never opened, and superseded holds; returns how many.

    A session that never opened: its payment is authorized, has no session row, was
    created before ``cutoff`` and either has not changed since (``updated_at``: the gate
    opens the session right after its hold is recorded, however long the hold call
    took) or is in ``resolved`` (its hold was still in flight after ``older_than``, so
    the gate that placed it is presumed dead, and this run recorded its answer). Any
    other payment listed for a superseded hold has only that hold voided.
    """
    db = payment.journal.sessions
    never_opened = sa.and_(Payment.state == "authorized", ShoppingSession.id.is_(None),
                           Payment.created_at < cutoff,
                           sa.or_(Payment.updated_at < cutoff, Payment.id.in_(resolved)))
    with db() as s:
        strays = s.execute(
            sa.select(Payment.session_id, never_opened)
            .outerjoin(ShoppingSession, ShoppingSession.id == Payment.session_id)
            .where(sa.or_(never_opened, Payment.superseded_ref.is_not(None)))).all()
    released = 0
    for session_id, unopened in strays:
        try:
            released += payment.release_stray(session_id=session_id,
                                              superseded_only=not unopened)
        except PaymentError:
            continue  # unknown, refused or busy: the next run tries again
    return released
