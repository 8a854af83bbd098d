"""Failed-attempt limits (brute-force protection): failures per key in a sliding window.

A counter records failures of keys (``acct:<e-mail>``, ``ip:<address>``, ...) and refuses
a request before any check once a key has its limit in the window. Two counters with one
interface (:class:`AttemptCounter`):

* :class:`SqlFailureWindow`, what the services use: one row per failure in the table
  ``failed_attempts`` of the store's database, so every process of the service (several
  API workers, the CLI) counts the same failures and a restart forgets none. A key is
  stored only as the SHA-256 of the counter's namespace and the key (keys hold e-mail
  addresses, staff ids and client addresses); a failure counts from the time of the
  service's clock when its attempt began. Rows past their window are deleted now and then
  (at most ``prune_batch`` rows every ``prune_every`` writes of an instance).
* :class:`FailureWindow`, in this process's memory (monotonic clock): for tests and
  tools without a database.

Both: a failure counts for ``window_s`` seconds. An attempt is *reserved* before the
secret is checked (:meth:`AttemptCounter.reserve`): the reservation is recorded as a
failure first and taken back (:meth:`Reservation.release`) when the attempt turns out not
to be one, so requests sent in parallel, to any number of processes, cannot all pass the
check before any of them is counted: at most ``limit`` attempts per key are let through
in a window unless some are released. A request over the limit gets
:class:`TooManyAttempts`, with ``retry_after_s`` the whole seconds until the key's oldest
counted row leaves the window plus one (at least 1), and is not counted itself. While
attempts are under way they count against the limit too (a key with ``limit`` attempts
in flight refuses the next one until they end).

Usage (a wrong guess counts, anything else, success or an unexpected error, does not)::

    with counter.reserve({"acct:ann": 5, "ip:10.0.0.1": 20}, "too many") as attempt:
        if not verified:
            attempt.count_as_failure()
            raise AuthenticationFailed(...)
        return issue_token()
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock, as_utc, utc_now
from storefront.db.models import FailedAttempt
from storefront.errors import StorefrontError

log = logging.getLogger(__name__)


class TooManyAttempts(StorefrontError):
    """Too many failed logins for this account or address; ``retry_after_s`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Reservation:
    """One attempt let through by :meth:`AttemptCounter.reserve`, already counted as a
    failure of each of its keys until :meth:`release` takes it back.

    As a context manager: leaving the block releases it unless :meth:`count_as_failure`
    was called in it (so a success, a refusal before the secret was checked or an
    unexpected error does not count; a wrong guess must say so). A release that fails
    when leaving the block is logged and the attempt stays counted (never less safe).
    """

    def __init__(self, forget: Callable[[], None]) -> None:
        self._forget = forget
        self._failed = False
        self._released = False

    @property
    def failed(self) -> bool:
        """Whether :meth:`count_as_failure` was called."""
        return self._failed

    def count_as_failure(self) -> None:
        """Keep the attempt counted: leaving the ``with`` block does not release it."""
        self._failed = True

    def release(self) -> None:
        """Take the attempt back (it is not a failure); no effect the second time. Raises
        the counter's storage errors (SQLAlchemyError for the database)."""
        if not self._released:
            self._released = True
            self._forget()

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._failed:
            return
        try:
            self.release()
        except Exception:  # the attempt stays counted: log it, keep the request's outcome
            log.warning("could not release a failed-attempt reservation; it stays counted "
                        "until its window passes", exc_info=True)


class AttemptCounter(Protocol):
    """Failures per key in a sliding window (see the module docstring)."""

    def count(self, key: str) -> tuple[int, float]:
        """(failures of ``key`` in the window, seconds until the oldest leaves it)."""
        ...

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys`` (no limit checked)."""
        ...

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or
        more in the window. A read only: requests in parallel all pass it, so it can
        refuse early, before costly work, but only :meth:`reserve` enforces a limit."""
        ...

    def reserve(self, limits: Mapping[str, int], reason: str) -> Reservation:
        """Count an attempt of every key of ``limits`` as a failure, unless a key then
        has more than ``limits[key]`` in the window: then nothing stays counted and
        TooManyAttempts(``reason``) is raised. Of any number of concurrent calls at most
        ``limits[key]`` minus the failures already counted get through."""
        ...


def _retry_after(wait_s: float) -> int:
    """Retry-After of a refusal: the whole seconds of ``wait_s`` plus one, at least 1."""
    return max(1, int(wait_s) + 1)


def _refuse(limits: Mapping[str, int], counts: Mapping[str, tuple[int, float]],
            reason: str, *, including: int) -> None:
    """Raise TooManyAttempts when a key's count is over ``limits[key] - 1 + including``
    (``including``: 0 before this attempt is counted, 1 once it is)."""
    for key, limit in limits.items():
        count, wait = counts[key]
        if count >= limit + including:
            raise TooManyAttempts(reason, retry_after_s=_retry_after(wait))


class FailureWindow:
    """Failed attempts per key in a sliding window, in this process's memory (thread-safe,
    monotonic clock): each process counts alone and a restart forgets the counts, so the
    services use :class:`SqlFailureWindow`."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._hits: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> tuple[int, float]:
        """``count`` with the lock held."""
        hits = self._hits[key]
        while hits and hits[0][0] <= now - self._window:
            hits.popleft()
        wait = hits[0][0] + self._window - now if hits else 0.0
        return len(hits), wait

    def count(self, key: str) -> tuple[int, float]:
        """(failures in the window, seconds until the oldest one leaves it)."""
        with self._lock:
            return self._count(key, time.monotonic())

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys``."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._hits[key].append((now, next(self._ids)))

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or more
        in the window (Retry-After: until its oldest failure leaves the window). A read
        only; :meth:`reserve` enforces the limit."""
        now = time.monotonic()
        with self._lock:
            counts = {key: self._count(key, now) for key in limits}
        _refuse(limits, counts, reason, including=0)

    def reserve(self, limits: Mapping[str, int], reason: str) -> Reservation:
        """Check every key of ``limits`` and count the attempt in one step under the lock
        (see :meth:`AttemptCounter.reserve`); raises TooManyAttempts(``reason``), counting
        nothing, when a key already has ``limits[key]`` failures or more."""
        now = time.monotonic()
        with self._lock:
            _refuse(limits, {key: self._count(key, now) for key in limits}, reason,
                    including=0)
            hit = (now, next(self._ids))
            for key in limits:
                self._hits[key].append(hit)

        def forget() -> None:
            with self._lock:
                for key in limits:
                    if hit in self._hits[key]:  # gone already when its window has passed
                        self._hits[key].remove(hit)

        return Reservation(forget)


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
    ``clock``: tz-aware UTC now (the service's clock). After every ``prune_every``-th
    write (:meth:`add` or a granted :meth:`reserve`) of this instance (the first one
    included) at most ``prune_batch`` rows past their window are deleted, of any
    counter. Raises ValueError for a bad namespace, a negative window or a prune setting
    under 1.
    """

    def __init__(self, sessions: sessionmaker[Session], *, window_s: float, namespace: str,
                 clock: Clock = utc_now, prune_every: int = 32, prune_batch: int = 500) -> None:
        if not namespace or "\x00" in namespace:
            raise ValueError("namespace must be a non-empty string without NUL")
        if window_s < 0 or prune_every < 1 or prune_batch < 1:
            raise ValueError("window_s must be >= 0, prune_every and prune_batch >= 1")
        self._sessions = sessions
        self._window = timedelta(seconds=window_s)
        self._namespace = namespace
        self._clock = clock
        self._prune = (prune_every, prune_batch)
        self._adds = 0
        self._lock = threading.Lock()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)  # SQLite compares the stored UTC text

    def counts(self, keys: list[str]) -> dict[str, tuple[int, float]]:
        """(failures in the window, seconds until the oldest leaves it) of each of
        ``keys``, read in one query; (0, 0.0) for a key without any."""
        if not keys:
            return {}
        with self._sessions() as db:
            return self._counts_in(db, keys, self._now())

    def _counts_in(self, db: Session, keys: list[str],
                   now: datetime) -> dict[str, tuple[int, float]]:
        """:meth:`counts` at ``now``, read in ``db``'s transaction."""
        digests = {key: key_digest(self._namespace, key) for key in keys}
        rows = db.execute(
            sa.select(FailedAttempt.key_hash, sa.func.count(), sa.func.min(FailedAttempt.at))
            .where(FailedAttempt.key_hash.in_(set(digests.values())))
            .where(FailedAttempt.at > now - self._window)
            .group_by(FailedAttempt.key_hash)).all()
        found = {digest: (int(n), (as_utc(oldest) + self._window - now).total_seconds())
                 for digest, n, oldest in rows}
        return {key: found.get(digest, (0, 0.0)) for key, digest in digests.items()}

    def count(self, key: str) -> tuple[int, float]:
        """(failures of ``key`` in the window, seconds until the oldest one leaves it)."""
        return self.counts([key])[key]

    def _insert(self, db: Session, keys: list[str], now: datetime) -> list[int]:
        """One row per key at ``now`` in ``db``'s transaction; their ids."""
        rows = [{"key_hash": key_digest(self._namespace, key), "at": now,
                 "expires_at": now + self._window} for key in keys]
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

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys`` (one transaction), pruning now and then;
        no limit is checked (the services count through :meth:`reserve`)."""
        if keys:
            now = self._now()
            with self._sessions.begin() as db:
                self._insert(db, list(keys), now)
            self._prune_now_and_then(now)

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or more
        in the window (Retry-After: until its oldest failure leaves the window); one query
        for all the keys. A read only; :meth:`reserve` enforces the limit."""
        _refuse(limits, self.counts(list(limits)), reason, including=0)

    def reserve(self, limits: Mapping[str, int], reason: str) -> Reservation:
        """Count an attempt of each key of ``limits`` (see :meth:`AttemptCounter.reserve`).

        A read first refuses a key already at its limit without writing. Otherwise one
        transaction takes the keys' turn (PostgreSQL: a transaction-scoped advisory lock
        per key, in a fixed order; SQLite: its single writer), inserts a row per key,
        counts the keys, this attempt's rows included, and commits only when no key is
        over its limit: reservations of a key follow one another, each counting every
        row committed before it, so exactly as many as the limit allows get through,
        whatever the number of threads and processes. A key over its limit: the
        transaction is rolled back and TooManyAttempts is raised (Retry-After from the
        oldest row counted, which may be an attempt under way). Raises SQLAlchemyError
        when the database fails (nothing counted then).
        """
        keys = list(limits)
        if not keys:
            return Reservation(lambda: None)
        _refuse(limits, self.counts(keys), reason, including=0)
        now = self._now()
        with self._sessions.begin() as db:
            if db.get_bind().dialect.name == "postgresql":
                for lock in sorted({_lock_id(key_digest(self._namespace, k)) for k in keys}):
                    db.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            ids = self._insert(db, keys, now)
            _refuse(limits, self._counts_in(db, keys, now), reason, including=1)
        self._prune_now_and_then(now)
        return Reservation(lambda: self._delete(ids))

    def prune(self, limit: int | None = None) -> int:
        """Delete at most ``limit`` (default ``prune_batch``) rows past their window, of any
        counter; returns how many went."""
        with self._sessions.begin() as db:
            return _delete_expired(db, self._now(), self._prune[1] if limit is None else limit)


def _lock_id(digest: str) -> int:
    """The PostgreSQL advisory lock (a signed 64-bit number) of a key's digest."""
    return int(digest[:16], 16) - 2**63


def _delete_expired(db: Session, now: datetime, limit: int) -> int:
    """Delete at most ``limit`` rows of ``failed_attempts`` expired at ``now``; the count."""
    stale = sa.select(FailedAttempt.id).where(FailedAttempt.expires_at <= now).limit(limit)
    done = db.execute(sa.delete(FailedAttempt).where(FailedAttempt.id.in_(stale))
                      .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)


def purge_expired_attempts(db: Session, now: datetime) -> int:
    """Delete every row of ``failed_attempts`` past its window at ``now`` (tz-aware UTC),
    whatever counter wrote it, in the caller's transaction; returns how many went. The
    retention sweep (:mod:`storefront.privacy.retention`) runs it, so rows do not outlive
    their window when no new failure comes to prune them."""
    done = db.execute(sa.delete(FailedAttempt)
                      .where(FailedAttempt.expires_at <= now.astimezone(UTC))
                      .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)
