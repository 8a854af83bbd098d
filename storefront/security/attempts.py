"""Failed-attempt limits (brute-force protection): failures per key in a sliding window.

A counter records failures of keys (``acct:<e-mail>``, ``ip:<address>``, ...) and refuses
a request before any check once a key has its limit in the window. Two counters with one
interface (:class:`AttemptCounter`):

* :class:`SqlFailureWindow`, what the services use: one row per failure in the table
  ``failed_attempts`` of the store's database, so every process of the service (several
  API workers, the CLI) counts the same failures and a restart forgets none. A key is
  stored only as the SHA-256 of the counter's namespace and the key (keys hold e-mail
  addresses, staff ids and client addresses); a failure counts from the time of the
  service's clock when it was recorded. Rows past their window are deleted now and then
  (at most ``prune_batch`` rows every ``prune_every`` recorded failures of an instance).
* :class:`FailureWindow`, in this process's memory (monotonic clock): for tests and
  tools without a database.

Both: a failure counts for ``window_s`` seconds; :meth:`refuse_when_over` raises
:class:`TooManyAttempts` when a key has ``limit`` failures or more in the window, with
``retry_after_s`` the whole seconds until its oldest one leaves the window plus one (at
least 1). Checking and recording are separate steps, so requests already past the check
when the limit is reached still finish (and are counted).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock, as_utc, utc_now
from storefront.db.models import FailedAttempt
from storefront.errors import StorefrontError


class TooManyAttempts(StorefrontError):
    """Too many failed logins for this account or address; ``retry_after_s`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class AttemptCounter(Protocol):
    """Failures per key in a sliding window (see the module docstring)."""

    def count(self, key: str) -> tuple[int, float]:
        """(failures of ``key`` in the window, seconds until the oldest leaves it)."""
        ...

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys``."""
        ...

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or
        more in the window."""
        ...


def _retry_after(wait_s: float) -> int:
    """Retry-After of a refusal: the whole seconds of ``wait_s`` plus one, at least 1."""
    return max(1, int(wait_s) + 1)


class FailureWindow:
    """Failed attempts per key in a sliding window, in this process's memory (thread-safe,
    monotonic clock): each process counts alone and a restart forgets the counts, so the
    services use :class:`SqlFailureWindow`."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def count(self, key: str) -> tuple[int, float]:
        """(failures in the window, seconds until the oldest one leaves it)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            wait = hits[0] + self._window - now if hits else 0.0
            return len(hits), wait

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys``."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._hits[key].append(now)

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or more
        in the window (Retry-After: until its oldest failure leaves the window)."""
        for key, limit in limits.items():
            count, wait = self.count(key)
            if count >= limit:
                raise TooManyAttempts(reason, retry_after_s=_retry_after(wait))


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
    ``clock``: tz-aware UTC now (the service's clock). Every ``prune_every``-th
    :meth:`add` of this instance (the first one included) deletes at most
    ``prune_batch`` rows past their window, of any counter. Raises ValueError for a bad
    namespace, a negative window or a prune setting under 1.
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
        now = self._now()
        digests = {key: key_digest(self._namespace, key) for key in keys}
        if not digests:
            return {}
        with self._sessions() as db:
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

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys`` (one transaction), pruning now and then."""
        if not keys:
            return
        now = self._now()
        rows = [{"key_hash": key_digest(self._namespace, key), "at": now,
                 "expires_at": now + self._window} for key in keys]
        with self._lock:
            prune = self._adds % self._prune[0] == 0
            self._adds += 1
        with self._sessions.begin() as db:
            db.execute(sa.insert(FailedAttempt), rows)
            if prune:
                _delete_expired(db, now, self._prune[1])

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or more
        in the window (Retry-After: until its oldest failure leaves the window); one query
        for all the keys."""
        counts = self.counts(list(limits))
        for key, limit in limits.items():
            count, wait = counts[key]
            if count >= limit:
                raise TooManyAttempts(reason, retry_after_s=_retry_after(wait))

    def prune(self, limit: int | None = None) -> int:
        """Delete at most ``limit`` (default ``prune_batch``) rows past their window, of any
        counter; returns how many went."""
        with self._sessions.begin() as db:
            return _delete_expired(db, self._now(), self._prune[1] if limit is None else limit)


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
