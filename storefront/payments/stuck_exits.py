"""Finish exits that no caller will finish: the server side of "every exit ends".

An exit writes the session ``exited`` (priced, committed) before any processor call,
then captures and settles, or sends the session to the staffed checkout. A crash in
between (or a processor that could not answer: 502 ``payment_pending``) leaves the
session ``exited`` with no receipt, its hold open or its money captured but not
recorded, until the gate sends the exit again, and a gate may never do so once the
shopper has left. :func:`finish_stuck_exits` runs the exit again for each such session,
as the gate's retry would: :meth:`storefront.checkout.CheckoutService.exit` resumes from
the payment journal (a call found done at the processor is recorded, never sent again),
so it charges at most once.

A session counts as stuck when it is ``exited``, in this store, exited longer than
``older_than`` ago, and no live process holds its exit lease (none, or one older than
``lease``). ``claimed_before`` (the start of the only process: a lease taken before it
is a dead process's) gives those leases back first. ``storefront serve`` runs it on a
background thread (:func:`storefront.api.app`), first as soon as it starts (not before it
listens: a processor that does not answer must not keep the service from starting), then
every ``stuck_exit_interval_s``; ``storefront payments reconcile`` runs it too. One run
stops starting exits after ``budget_s`` seconds; the next run takes the rest. A session
whose exit fails with any error is logged and counted ``failed``, and the run goes on.

Each run then closes the orphaned ``new`` payments (a process killed after it created a
payment row but before it journaled any processor call for it, whose session never
opened or whose exit has ended), under the same threshold and lease rules, each audited
(:func:`storefront.payments.orphans.close_orphaned_payments`; counted in ``orphans_*``).
It runs after the exits: a ``new`` payment of a session still ``exited`` is the exit's to
resume (hold, then capture or release), never closed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import ShoppingSession
from storefront.errors import Conflict, PaymentError, StorefrontError
from storefront.payments.orphans import close_orphaned_payments

if TYPE_CHECKING:
    from storefront.checkout import CheckoutService
    from storefront.security.audit import Audit

log = logging.getLogger(__name__)


@dataclass
class StuckExitReport:
    """What one run did: sessions found stuck, then settled (paid), sent to the staffed
    checkout, still pending (the processor could not answer: next run), busy (another
    process took the exit meanwhile) or failed (an error, logged); their ids by outcome.

    ``orphans_*``: the orphaned ``new`` payments (:class:`storefront.payments.orphans.
    OrphanReport`): closed ``abandoned`` (audited), busy (a live exit lease, or moved on
    meanwhile), failed (logged; next run), and those left ``new`` because a processor
    call is journaled for them (``orphans_with_calls``: not provably never made)."""

    found: int = 0
    settled: int = 0
    staffed: int = 0
    still_pending: int = 0
    busy: int = 0
    failed: int = 0
    sessions: dict[str, str] = field(default_factory=dict)
    orphans_abandoned: int = 0
    orphans_busy: int = 0
    orphans_failed: int = 0
    orphans_with_calls: int = 0


def stuck_exits(db: sessionmaker[Session], *, store_id: str, clock: Clock,
                older_than: timedelta, lease: timedelta, limit: int = 500) -> list[str]:
    """Ids of this store's sessions stuck in ``exited`` (see the module docstring),
    oldest exit first, at most ``limit``."""
    now = clock()
    row = ShoppingSession
    with db() as s:
        return list(s.scalars(
            sa.select(row.id)
            .where(row.status == "exited", row.store_id == store_id,
                   row.exited_at <= now - older_than,
                   sa.or_(row.exit_claim.is_(None), row.exit_claimed_at < now - lease))
            .order_by(row.exited_at).limit(limit)))


def _give_back_leases(db: sessionmaker[Session], store_id: str, before: datetime) -> int:
    row = ShoppingSession
    with db.begin() as s:
        done = s.execute(sa.update(row).where(row.status == "exited", row.store_id == store_id,
                                              row.exit_claim.is_not(None),
                                              row.exit_claimed_at < before)
                         .values(exit_claim=None, exit_claimed_at=None))
        return int(getattr(done, "rowcount", 0) or 0)


def finish_stuck_exits(*, checkout: CheckoutService, db: sessionmaker[Session],
                       store_id: str, clock: Clock, older_than: timedelta, lease: timedelta,
                       claimed_before: datetime | None = None, limit: int = 500,
                       budget_s: float = 120.0, audit: Audit | None = None) -> StuckExitReport:
    """Run the exit again for each stuck session, then close the orphaned ``new``
    payments; returns what became of them.

    ``audit``: where the payments closed are audited (None: an ``Audit`` on ``db``).
    Raises nothing for one session's or payment's failure (counted and logged); database
    errors finding the sessions or the payments propagate.
    """
    if claimed_before is not None:
        _give_back_leases(db, store_id, claimed_before)
    report = StuckExitReport()
    stop_at = time.monotonic() + budget_s
    for session_id in stuck_exits(db, store_id=store_id, clock=clock, older_than=older_than,
                                  lease=lease, limit=limit):
        if time.monotonic() > stop_at:
            break
        report.found += 1
        report.sessions[session_id] = outcome = _finish_one(checkout, session_id)
        setattr(report, outcome, getattr(report, outcome) + 1)
    orphans = close_orphaned_payments(db, store_id=store_id, clock=clock,
                                      older_than=older_than, lease=lease, audit=audit,
                                      claimed_before=claimed_before, limit=limit)
    report.orphans_abandoned, report.orphans_busy = orphans.abandoned, orphans.busy
    report.orphans_failed, report.orphans_with_calls = orphans.failed, orphans.with_calls
    if report.found or orphans.payments:
        log.info("stuck exits: %s", {k: v for k, v in vars(report).items()
                                     if k != "sessions"})
    return report


def _finish_one(checkout: CheckoutService, session_id: str) -> str:
    try:
        result = checkout.exit(session_id)
    except Conflict:
        return "busy"
    except PaymentError as exc:
        log.warning("exit of %s still pending at the processor: %s", session_id, exc.reason)
        return "still_pending"
    except StorefrontError as exc:
        log.error("exit of %s could not be finished: %s", session_id, exc.reason)
        return "failed"
    except Exception:  # noqa: BLE001 - one broken session must not stop the others
        log.exception("exit of %s could not be finished", session_id)
        return "failed"
    return "settled" if result.status == "paid" else "staffed"
