"""The database-backed failed-attempt counter (:class:`SqlFailureWindow`): one row per
failure or attempt under way in ``failed_attempts``, shared by every process of the
service and kept across restarts. The semantics, the in-memory twin and the reservation
protocol are in :mod:`storefront.security.attempts`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock, as_utc, utc_now
from storefront.db.models import FailedAttempt
from storefront.security.attempts import (
    PENDING_MAX_S,
    Reservation,
    Tally,
    _refuse,
)

log = logging.getLogger(__name__)


def key_digest(namespace: str, key: str) -> str:
    """SHA-256 hex of ``namespace`` and ``key`` (what ``failed_attempts`` stores): any
    string, empty or long, lone surrogates included (UTF-8 with ``surrogatepass``)."""
    data = f"{namespace}\x00{key}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


class SqlFailureWindow:
    """Failed attempts per key in a sliding window, one row each in ``failed_attempts``:
    shared by every process on the database and kept across restarts (thread-safe).

    ``namespace`` separates counters sharing the table (the shopper logins' ``ip:`` keys
    are not the staff logins'); a non-empty string without NUL, the same in every process.
    ``clock``: tz-aware UTC now (the service's clock). ``pending_max_s``: how long an
    attempt under way (a ``pending`` row) counts at most. After every ``prune_every``-th
    write (:meth:`add` or a granted :meth:`reserve`) of this instance (the first one
    included) at most ``prune_batch`` stale rows are deleted, of any counter. Raises
    ValueError for a bad namespace, a negative window, a pending bound not over 0 or a
    prune setting under 1.
    """

    def __init__(self, sessions: sessionmaker[Session], *, window_s: float, namespace: str,
                 clock: Clock = utc_now, prune_every: int = 32, prune_batch: int = 500,
                 pending_max_s: float = PENDING_MAX_S) -> None:
        if not namespace or "\x00" in namespace:
            raise ValueError("namespace must be a non-empty string without NUL")
        if window_s < 0 or pending_max_s <= 0 or prune_every < 1 or prune_batch < 1:
            raise ValueError("window_s must be >= 0, pending_max_s > 0, prune_every and "
                             "prune_batch >= 1")
        self._sessions = sessions
        self._window = timedelta(seconds=window_s)
        self._pending_max = timedelta(seconds=pending_max_s)
        self._namespace = namespace
        self._clock = clock
        self._prune = (prune_every, prune_batch)
        self._adds = 0
        self._lock = threading.Lock()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)  # SQLite compares the stored UTC text

    def tallies(self, keys: list[str]) -> dict[str, Tally]:
        """The :class:`Tally` of each of ``keys`` now, read in one query."""
        if not keys:
            return {}
        with self._sessions() as db:
            return self._tallies_in(db, keys, self._now())

    def counts(self, keys: list[str]) -> dict[str, tuple[int, float]]:
        """(failures and attempts under way counted, seconds until the oldest of them
        stops counting) of each of ``keys``, read in one query; (0, 0.0) for a key
        without any."""
        return {key: (t.total, t.wait_s) for key, t in self.tallies(keys).items()}

    def _tallies_in(self, db: Session, keys: list[str], now: datetime) -> dict[str, Tally]:
        """:meth:`tallies` at ``now``, read in ``db``'s transaction: failures in the
        window and pending rows younger than the pending bound (older ones are ignored)."""
        digests = {key: key_digest(self._namespace, key) for key in keys}
        row = FailedAttempt
        failed = sa.and_(row.pending.is_(False), row.at > now - self._window)
        pending = sa.and_(row.pending.is_(True), row.at > now - self._pending_max)
        rows = db.execute(
            sa.select(row.key_hash,
                      sa.func.sum(sa.case((failed, 1), else_=0)),
                      sa.func.min(sa.case((failed, row.at), else_=None)),
                      sa.func.sum(sa.case((pending, 1), else_=0)),
                      sa.func.min(sa.case((pending, row.at), else_=None)))
            .where(row.key_hash.in_(set(digests.values())))
            .where(row.at > now - max(self._window, self._pending_max))
            .where(sa.or_(failed, pending))
            .group_by(row.key_hash)).all()
        found = {digest: Tally(int(n_failed or 0), self._wait(oldest_failed, self._window, now),
                               int(n_pending or 0),
                               self._wait(oldest_pending, self._pending_max, now))
                 for digest, n_failed, oldest_failed, n_pending, oldest_pending in rows}
        return {key: found.get(digest, Tally()) for key, digest in digests.items()}

    @staticmethod
    def _wait(oldest: datetime | None, span: timedelta, now: datetime) -> float:
        """Seconds until a row at ``oldest`` counting for ``span`` stops (0.0: none)."""
        return 0.0 if oldest is None else (as_utc(oldest) + span - now).total_seconds()

    def count(self, key: str) -> tuple[int, float]:
        """(failures and attempts under way of ``key`` counted, seconds until the oldest
        of them stops counting)."""
        return self.counts([key])[key]

    def _insert(self, db: Session, keys: list[str], now: datetime, *,
                pending: bool) -> list[int]:
        """One row per key at ``now`` in ``db``'s transaction (a failure, or an attempt
        under way, which expires after the pending bound); their ids."""
        expires = now + (self._pending_max if pending else self._window)
        rows = [{"key_hash": key_digest(self._namespace, key), "at": now,
                 "expires_at": expires, "pending": pending} for key in keys]
        return list(db.scalars(sa.insert(FailedAttempt).returning(FailedAttempt.id), rows))

    def _prune_now_and_then(self, now: datetime) -> None:
        """Every ``prune_every``-th write of this instance (the first included): delete at
        most ``prune_batch`` stale rows in a transaction of its own, after the write's
        (no lock of a reservation is held meanwhile); a failure is logged, not raised."""
        with self._lock:
            prune = self._adds % self._prune[0] == 0
            self._adds += 1
        if prune:
            try:
                with self._sessions.begin() as db:
                    _delete_expired(db, now, self._prune[1])
            except sa.exc.SQLAlchemyError:
                log.warning("could not prune stale failed attempts", exc_info=True)

    def _delete(self, ids: list[int]) -> None:
        """Delete the rows ``ids`` (one transaction)."""
        if ids:
            with self._sessions.begin() as db:
                db.execute(sa.delete(FailedAttempt).where(FailedAttempt.id.in_(ids))
                           .execution_options(synchronize_session=False))

    def _keep(self, ids: list[int], keys: list[str], at: datetime) -> None:
        """Turn the pending rows ``ids`` (of ``keys``, reserved at ``at``) into failures
        counting for the whole window from ``at``, in one transaction; a row pruned
        meanwhile (the check outlived the pending bound) is written again as a failure."""
        with self._sessions.begin() as db:
            db.execute(sa.update(FailedAttempt).where(FailedAttempt.id.in_(ids))
                       .values(pending=False, expires_at=at + self._window)
                       .execution_options(synchronize_session=False))
            there = set(db.scalars(sa.select(FailedAttempt.id)
                                   .where(FailedAttempt.id.in_(ids))))
            gone = [key for key, row_id in zip(keys, ids, strict=True) if row_id not in there]
            if gone:
                self._insert(db, gone, at, pending=False)

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys`` (one transaction), pruning now and then;
        no limit is checked (the services count through :meth:`reserve`)."""
        if keys:
            now = self._now()
            with self._sessions.begin() as db:
                self._insert(db, list(keys), now, pending=False)
            self._prune_now_and_then(now)

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures and
        attempts under way or more (Retry-After: see the module docstring); one query
        for all the keys. A read only; :meth:`reserve` enforces the limit."""
        _refuse(limits, self.tallies(list(limits)), reason, including=0)

    def reserve(self, limits: Mapping[str, int], reason: str) -> Reservation:
        """Count an attempt of each key of ``limits`` (see :meth:`AttemptCounter.reserve`).

        A read first refuses a key already at its limit without writing. Otherwise one
        transaction takes the keys' turn (PostgreSQL: a transaction-scoped advisory lock
        per key, in a fixed order; SQLite: its single writer), inserts a pending row per
        key, counts the keys, this attempt's rows included, and commits only when no key
        is over its limit: reservations of a key follow one another, each counting every
        row committed before it, so exactly as many as the limit allows get through,
        whatever the number of threads and processes. A key over its limit: the
        transaction is rolled back and TooManyAttempts is raised (Retry-After: see the
        module docstring). Raises SQLAlchemyError when the database fails (nothing
        counted then). The reservation's :meth:`Reservation.count_as_failure` turns the
        rows into failures (kept from the reservation's time for the whole window).
        """
        keys = list(limits)
        if not keys:
            return Reservation(lambda: None)
        _refuse(limits, self.tallies(keys), reason, including=0)
        now = self._now()
        with self._sessions.begin() as db:
            if db.get_bind().dialect.name == "postgresql":
                for lock in sorted({_lock_id(key_digest(self._namespace, k)) for k in keys}):
                    db.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            ids = self._insert(db, keys, now, pending=True)
            _refuse(limits, self._tallies_in(db, keys, now), reason, including=1)
        self._prune_now_and_then(now)
        return Reservation(lambda: self._delete(ids), lambda: self._keep(ids, keys, now))

    def prune(self, limit: int | None = None) -> int:
        """Delete at most ``limit`` (default ``prune_batch``) stale rows (past their window,
        or pending past the pending bound), of any counter; returns how many went."""
        with self._sessions.begin() as db:
            return _delete_expired(db, self._now(), self._prune[1] if limit is None else limit)


def _lock_id(digest: str) -> int:
    """The PostgreSQL advisory lock (a signed 64-bit number) of a key's digest."""
    return int(digest[:16], 16) - 2**63


def _delete_expired(db: Session, now: datetime, limit: int) -> int:
    """Delete at most ``limit`` rows of ``failed_attempts`` expired at ``now`` (a pending
    row expires at the pending bound); the count. The expiry is checked again on the row
    deleted: a pending row made a failure meanwhile (a later expiry) stays."""
    expired = FailedAttempt.expires_at <= now
    stale = sa.select(FailedAttempt.id).where(expired).limit(limit)
    done = db.execute(sa.delete(FailedAttempt).where(FailedAttempt.id.in_(stale), expired)
                      .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)


def purge_expired_attempts(db: Session, now: datetime) -> int:
    """Delete every row of ``failed_attempts`` past its window at ``now`` (tz-aware UTC),
    or pending past its bound (left by a process that died), whatever counter wrote it,
    in the caller's transaction; returns how many went. The retention sweep
    (:mod:`storefront.privacy.retention`) runs it, so rows do not outlive their window
    when no new failure comes to prune them."""
    done = db.execute(sa.delete(FailedAttempt)
                      .where(FailedAttempt.expires_at <= now.astimezone(UTC))
                      .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)
