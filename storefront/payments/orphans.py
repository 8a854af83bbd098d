"""Close orphaned ``new`` payments: rows of a session whose process died before any
processor call was journaled for them.

A payment row is created in state ``new`` (:meth:`storefront.exit_payment.ExitPayment.
_load_or_start`: at entry for the hold, or at exit when there was no entry hold), and the
journal moves it to ``authorizing`` in the very transaction that writes its first call
``in_flight``, before anything is sent (:mod:`storefront.payments.journal`). So a ``new``
payment with no ``payment_operations`` row has never had a processor call started: no
hold, no money. A process killed between the two writes leaves such a row behind; when
its session never opened (an entry gate killed mid-entry) or its exit has ended (settled
or at the staffed checkout), nothing will ever move it on.

:func:`close_orphaned_payments` moves those rows to ``abandoned`` (a rest state no call
starts from: :data:`ABANDONED`), each in one transaction with its audit entry (actor
``reconcile``, action ``payment_abandoned``, subject ``payment:<id>``, which the
shopper's data export finds through the payment even when its session never opened: the
session id, amount and currency in minor units, the session's status, the states before
and after).
A payment is closed only when, in the same guarded ``UPDATE``:

- it is still ``new`` and has been so for longer than ``older_than`` and at least
  :data:`MIN_AGE` (and, given
  ``claimed_before``, since before that moment: the start of the only process);
- the journal holds no call for it at all. A ``new`` payment with a call journaled (a
  hold that reconciliation recorded ``not_applied``: a look-up found nothing, which does
  not prove the call never took effect, and its late answer is still recorded while the
  payment is ``new``) is left as it is and only counted (``with_calls``);
- its session does not exist, or is of this store, ``settled`` or ``staffed``, and holds
  no live exit lease (none, or one older than ``lease``). A session still ``open`` or
  ``exited`` is left to its exit: the exit (the gate's retry, or
  :mod:`storefront.payments.stuck_exits`) resumes from the same row (a payment is found by
  its session's key, never created twice) and holds, then captures or releases it.

Races: the journal's first call on the payment and this ``UPDATE`` both compare the state
``new``, so exactly one wins (a hold decided on ``new`` after the row was closed is not
sent: ``PaymentBusy``); two sweeps at once close a row once, with one audit entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Payment, PaymentOperation, ShoppingSession
from storefront.security.audit import Audit, NewEntry

log = logging.getLogger(__name__)

NEW = "new"
ABANDONED = "abandoned"
"""The rest state of a payment closed before any processor call: nothing was held or
taken, and no call starts from it (the exit treats it as not paid)."""
AUDIT_ACTION = "payment_abandoned"
ACTOR = "reconcile"
EXIT_ENDED = ("settled", "staffed")
MIN_AGE = timedelta(seconds=60)
"""The youngest ``new`` payment a sweep may close, whatever ``older_than`` says: an entry
gate writes the payment row and then journals its hold a moment later, with no session
row or lease to protect it in between (``storefront payments reconcile --older-than 0``
finishes every stuck exit at once, but must not abandon an entry under way)."""


@dataclass
class OrphanReport:
    """What one sweep did: ``abandoned`` (closed, audited), ``busy`` (left: a live exit
    lease, or the row moved on or was closed by another sweep since it was read),
    ``failed`` (an error, logged; the row stays ``new`` for the next run), ``with_calls``
    (``new`` payments past the threshold with a journaled call: left as they are);
    ``payments``: payment id -> outcome, for the first three."""

    abandoned: int = 0
    busy: int = 0
    failed: int = 0
    with_calls: int = 0
    payments: dict[str, str] = field(default_factory=dict)


def close_orphaned_payments(db: sessionmaker[Session], *, store_id: str, clock: Clock,
                            older_than: timedelta, lease: timedelta,
                            audit: Audit | None = None, claimed_before: datetime | None = None,
                            limit: int = 500) -> OrphanReport:
    """Move this store's orphaned ``new`` payments (module docstring) to ``abandoned``,
    oldest first, at most ``limit``; returns what it did.

    ``audit``: where the entries go (None: an :class:`Audit` on ``db``). Raises nothing
    for one payment's failure (counted ``failed``, logged: e.g. an audit write refused,
    which rolls its row back); database errors finding the payments propagate.
    """
    now = clock()
    cutoff = now - max(older_than, MIN_AGE)
    if claimed_before is not None:
        cutoff = min(cutoff, claimed_before)
    audit = audit or Audit(db, clock)
    report = OrphanReport()
    with db() as s:
        found = s.execute(_candidates(store_id, cutoff, limit)).all()
        report.with_calls = int(s.execute(_with_calls(store_id, cutoff)).scalar() or 0)
    for payment_id, session_id, amount, currency, status in found:
        try:
            done = abandon(db, audit, payment_id=payment_id, session_id=session_id,
                           amount_minor=amount, currency=currency, session_status=status,
                           store_id=store_id, cutoff=cutoff, now=now, lease=lease)
            outcome = "abandoned" if done else "busy"
        except Exception:  # noqa: BLE001 - one broken row must not stop the others
            log.exception("orphaned payment %s could not be closed", payment_id)
            outcome = "failed"
        report.payments[payment_id] = outcome
        setattr(report, outcome, getattr(report, outcome) + 1)
    if report.abandoned or report.busy or report.failed:
        log.info("orphaned new payments: %s",
                 {k: v for k, v in vars(report).items() if k != "payments"})
    return report


def abandon(db: sessionmaker[Session], audit: Audit, *, payment_id: str, session_id: str,
            amount_minor: int, currency: str, session_status: str | None, store_id: str,
            cutoff: datetime, now: datetime, lease: timedelta) -> bool:
    """Close one payment found orphaned: True when this call moved it ``new`` ->
    ``abandoned`` and audited it (one transaction); False when the guarded write found it
    no longer orphaned (another call or sweep moved it, a call was journaled, its session
    moved on or took a live lease): nothing written. Raises what the audit log raises
    (the write is then rolled back with it)."""
    with db.begin() as s:
        done = s.execute(_ABANDON, {
            "pid": payment_id, "cutoff": cutoff, "now": now, "store_id": store_id,
            "live_after": now - lease})
        if int(getattr(done, "rowcount", 0) or 0) != 1:
            return False
        audit.record_in(s, [NewEntry(ACTOR, AUDIT_ACTION, f"payment:{payment_id}", {
            "session_id": session_id, "amount_minor": amount_minor, "currency": currency,
            "session": session_status or "never opened", "state_before": NEW,
            "state": ABANDONED, "calls": 0})])
    return True


_P = cast(sa.Table, Payment.__table__)
_O = cast(sa.Table, PaymentOperation.__table__)
_S = cast(sa.Table, ShoppingSession.__table__)
_NO_CALL = ~sa.select(_O.c.id).where(_O.c.payment_id == _P.c.id).correlate(_P).exists()


def _session_ok(store_id: sa.ColumnElement[str] | str,
                live_after: sa.ColumnElement[datetime] | None) -> sa.ColumnElement[bool]:
    """No session of the payment that an exit may still act on: none, or one of this
    store whose exit ended (and, with ``live_after``, with no exit lease taken since)."""
    blocking = [_S.c.status.not_in(EXIT_ENDED), _S.c.store_id != store_id]
    if live_after is not None:
        blocking.append(sa.and_(_S.c.exit_claim.is_not(None),
                                _S.c.exit_claimed_at >= live_after))
    return ~(sa.select(_S.c.id).where(_S.c.id == _P.c.session_id, sa.or_(*blocking))
             .correlate(_P).exists())


def _candidates(store_id: str, cutoff: datetime, limit: int) -> sa.Select[Any]:
    """Orphaned ``new`` payments regardless of exit leases (the write checks those)."""
    status = (sa.select(_S.c.status).where(_S.c.id == _P.c.session_id).correlate(_P)
              .scalar_subquery())
    return (sa.select(_P.c.id, _P.c.session_id, _P.c.amount_minor, _P.c.currency, status)
            .where(_P.c.state == NEW, _P.c.updated_at < cutoff, _NO_CALL,
                   _session_ok(store_id, None))
            .order_by(_P.c.created_at, _P.c.id).limit(limit))


def _with_calls(store_id: str, cutoff: datetime) -> sa.Select[Any]:
    """How many ``new`` payments past ``cutoff`` have a journaled call (left alone)."""
    return (sa.select(sa.func.count()).select_from(_P)
            .where(_P.c.state == NEW, _P.c.updated_at < cutoff, ~_NO_CALL,
                   _session_ok(store_id, None)))


_ABANDON = (sa.update(_P)
            .where(_P.c.id == sa.bindparam("pid"), _P.c.state == NEW,
                   _P.c.updated_at < sa.bindparam("cutoff", type_=_P.c.updated_at.type),
                   _NO_CALL,
                   _session_ok(sa.bindparam("store_id", type_=sa.String()),
                               sa.bindparam("live_after", type_=_S.c.exit_claimed_at.type)))
            .values(state=ABANDONED,
                    updated_at=sa.bindparam("now", type_=_P.c.updated_at.type)))
