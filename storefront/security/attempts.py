"""Failed-attempt limits (brute-force protection): failures per key in a sliding window.

A counter records failures of keys (``acct:<e-mail>``, ``ip:<address>``, ...) and refuses
a request before any check once a key has its limit in the window. Two counters with one
interface (:class:`AttemptCounter`):

* :class:`storefront.security.attempts_sql.SqlFailureWindow`, what the services use: one
  row per failure in the table ``failed_attempts`` of the store's database, so every
  process of the service (several API workers, the CLI) counts the same failures and a
  restart forgets none. A key is
  stored only as the SHA-256 of the counter's namespace and the key (keys hold e-mail
  addresses, staff ids and client addresses); a failure counts from the time of the
  service's clock when its attempt began. An attempt under way is a row marked
  ``pending``, which stops counting after ``pending_max_s`` seconds. Rows past their
  window, and pending rows past that bound (left by a process that died during a check),
  are deleted now and then (at most ``prune_batch`` rows every ``prune_every`` writes of
  an instance).
* :class:`FailureWindow`, in this process's memory (monotonic clock): for tests and
  tools without a database.

Both: a failure counts for ``window_s`` seconds. An attempt is *reserved* before the
secret is checked (:meth:`AttemptCounter.reserve`): the reservation is recorded as an
attempt *under way* (a pending row), turned into a failure
(:meth:`Reservation.count_as_failure`) or taken back (:meth:`Reservation.release`) once
the check is done, so requests sent in parallel, to any number of processes, cannot all
pass the check before any of them is counted: at most ``limit`` attempts per key are let
through in a window unless some are released. An attempt under way counts against the
limit for at most ``pending_max_s`` seconds (:data:`PENDING_MAX_S`, far longer than any
check): past that it is the leftover of a process that died during the check (kill -9)
and neither counts nor blocks, and the pruning deletes it. A request over the limit gets
:class:`TooManyAttempts` and is not counted itself. Its ``retry_after_s``: when the
failures alone reach a key's limit, the whole seconds until the key's oldest counted
failure leaves the window plus one (at least 1); when the key is over only because of
attempts still under way (which end in a moment, most of them as successes), 1 second.
With several keys refused, the longest wait.

Usage (a wrong guess counts, anything else, success or an unexpected error, does not)::

    with counter.reserve({"acct:ann": 5, "ip:10.0.0.1": 20}, "too many") as attempt:
        if not verified:
            attempt.count_as_failure()
            raise AuthenticationFailed(...)
        return issue_token()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from storefront.errors import StorefrontError

log = logging.getLogger(__name__)

PENDING_MAX_S = 30.0
"""Seconds an attempt under way counts against the limit at most: a check (an argon2 hash,
~0.1 s; a code look-up) never takes that long, so an older pending row was left by a
process that died during the check and is ignored (and pruned)."""


class TooManyAttempts(StorefrontError):
    """Too many failed logins for this account or address; ``retry_after_s`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Reservation:
    """One attempt let through by :meth:`AttemptCounter.reserve`, counted against each of
    its keys as an attempt under way (for at most :data:`PENDING_MAX_S` seconds) until
    :meth:`count_as_failure` makes it a failure or :meth:`release` takes it back.

    As a context manager: leaving the block releases it unless :meth:`count_as_failure`
    was called in it (so a success, a refusal before the secret was checked or an
    unexpected error does not count; a wrong guess must say so). A release that fails
    when leaving the block is logged and the attempt stays counted (never less safe).
    """

    def __init__(self, forget: Callable[[], None],
                 keep: Callable[[], None] = lambda: None) -> None:
        self._forget = forget
        self._keep = keep
        self._failed = False
        self._released = False

    @property
    def failed(self) -> bool:
        """Whether :meth:`count_as_failure` was called."""
        return self._failed

    def count_as_failure(self) -> None:
        """Count the attempt as a failure of each key for the whole window (from the time
        it was reserved); leaving the ``with`` block then does not release it. No effect
        after :meth:`release` or the second time. A storage error is logged, not raised
        (the caller's answer stands; the attempt then counts only as one under way)."""
        if self._failed or self._released:
            return
        self._failed = True
        try:
            self._keep()
        except Exception:
            log.error("could not count a failed attempt as a failure; it counts only as "
                      "an attempt under way", exc_info=True)

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
        """(failures and attempts under way of ``key`` counted against its limit, seconds
        until the oldest counted one stops counting); (0, 0.0) for none."""
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
        """Count an attempt under way of every key of ``limits``, unless a key then
        has more than ``limits[key]`` counted: then nothing stays counted and
        TooManyAttempts(``reason``) is raised. Of any number of concurrent calls at most
        ``limits[key]`` minus the failures and attempts under way already counted get
        through."""
        ...


@dataclass(frozen=True)
class Tally:
    """What counts against one key's limit now: ``failures`` in the window (the oldest
    leaves it in ``failures_wait_s`` seconds) and ``pending`` attempts under way younger
    than the pending bound (the oldest stops counting in ``pending_wait_s`` seconds)."""

    failures: int = 0
    failures_wait_s: float = 0.0
    pending: int = 0
    pending_wait_s: float = 0.0

    @property
    def total(self) -> int:
        """Failures plus attempts under way."""
        return self.failures + self.pending

    @property
    def wait_s(self) -> float:
        """Seconds until the oldest counted entry stops counting (0.0 for none)."""
        waits = [w for n, w in ((self.failures, self.failures_wait_s),
                                (self.pending, self.pending_wait_s)) if n]
        return min(waits, default=0.0)


def _retry_after(wait_s: float) -> int:
    """Retry-After of a refusal: the whole seconds of ``wait_s`` plus one, at least 1."""
    return max(1, int(wait_s) + 1)


def _refuse(limits: Mapping[str, int], tallies: Mapping[str, Tally], reason: str, *,
            including: int) -> None:
    """Raise TooManyAttempts when a key's failures and attempts under way are over
    ``limits[key] - 1 + including`` (``including``: 0 before this attempt is counted, 1
    once it is, as an attempt under way). Retry-After: until the oldest failure leaves
    the window (+1 s) when the failures alone reach the limit, else 1 s (only attempts
    under way are in the way); the longest of the keys refused."""
    waits = []
    for key, limit in limits.items():
        tally = tallies[key]
        if tally.failures >= limit:
            waits.append(_retry_after(tally.failures_wait_s))
        elif tally.total >= limit + including:
            waits.append(1)
    if waits:
        raise TooManyAttempts(reason, retry_after_s=max(waits))


class _Hit:
    """One entry of :class:`FailureWindow`: when (monotonic seconds) and whether the
    attempt is still under way; one object shared by the keys of an attempt."""

    __slots__ = ("at", "pending")

    def __init__(self, at: float, pending: bool) -> None:
        self.at = at
        self.pending = pending


class FailureWindow:
    """Failed attempts per key in a sliding window, in this process's memory (thread-safe,
    monotonic clock): each process counts alone and a restart forgets the counts, so the
    services use :class:`SqlFailureWindow`. ``pending_max_s``: how long an attempt under
    way counts at most; ``clock``: monotonic seconds (tests pass their own). Raises
    ValueError for a negative window or a pending bound not over 0."""

    def __init__(self, window_s: float, *, pending_max_s: float = PENDING_MAX_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s < 0 or pending_max_s <= 0:
            raise ValueError("window_s must be >= 0 and pending_max_s > 0")
        self._window = window_s
        self._pending_max = pending_max_s
        self._clock = clock
        self._hits: dict[str, deque[_Hit]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _stale(self, hit: _Hit, now: float) -> bool:
        """Whether ``hit`` no longer counts at ``now``."""
        return hit.at <= now - (self._pending_max if hit.pending else self._window)

    def _tally(self, key: str, now: float) -> Tally:
        """What counts against ``key`` at ``now`` (the lock held); drops stale entries
        from the front (the entries are in time order)."""
        hits = self._hits[key]
        while hits and self._stale(hits[0], now):
            hits.popleft()
        live = [h for h in hits if not self._stale(h, now)]
        failures = [h.at for h in live if not h.pending]
        pending = [h.at for h in live if h.pending]
        return Tally(len(failures), failures[0] + self._window - now if failures else 0.0,
                     len(pending), pending[0] + self._pending_max - now if pending else 0.0)

    def tallies(self, keys: list[str]) -> dict[str, Tally]:
        """The :class:`Tally` of each of ``keys`` now."""
        now = self._clock()
        with self._lock:
            return {key: self._tally(key, now) for key in keys}

    def count(self, key: str) -> tuple[int, float]:
        """(failures and attempts under way counted, seconds until the oldest of them
        stops counting)."""
        tally = self.tallies([key])[key]
        return tally.total, tally.wait_s

    def add(self, *keys: str) -> None:
        """Record one failure of each of ``keys``."""
        hit = _Hit(self._clock(), pending=False)
        with self._lock:
            for key in keys:
                self._hits[key].append(hit)

    def refuse_when_over(self, limits: Mapping[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures and
        attempts under way or more (Retry-After: see the module docstring). A read only;
        :meth:`reserve` enforces the limit."""
        _refuse(limits, self.tallies(list(limits)), reason, including=0)

    def reserve(self, limits: Mapping[str, int], reason: str) -> Reservation:
        """Check every key of ``limits`` and count the attempt as under way in one step
        under the lock (see :meth:`AttemptCounter.reserve`); raises
        TooManyAttempts(``reason``), counting nothing, when a key already has
        ``limits[key]`` failures and attempts under way or more."""
        now = self._clock()
        hit = _Hit(now, pending=True)
        with self._lock:
            _refuse(limits, {key: self._tally(key, now) for key in limits}, reason,
                    including=0)
            for key in limits:
                self._hits[key].append(hit)

        def forget() -> None:
            with self._lock:
                for key in limits:
                    if hit in self._hits[key]:  # gone already when it stopped counting
                        self._hits[key].remove(hit)

        def keep() -> None:
            with self._lock:
                hit.pending = False
                for key in limits:  # back in its place if dropped as a leftover meanwhile
                    hits = self._hits[key]
                    if hit not in hits:
                        hits.insert(sum(1 for h in hits if h.at <= hit.at), hit)

        return Reservation(forget, keep)
