"""Run the retention sweep periodically inside ``storefront serve``.

:class:`PeriodicTask` calls a function on a daemon thread: first ``first_delay_s``
after :meth:`PeriodicTask.start`, then every ``interval_s``; an error is logged and the
next run comes as planned; :meth:`PeriodicTask.stop` ends it at shutdown (waiting for a
run in progress). The app's lifespan starts one for
:meth:`storefront.privacy.retention.RetentionService.sweep` (settings
``retention_sweep_interval_s``, ``retention_sweep_first_delay_s``).

Several API worker processes on one database each run their own: the sweep is
idempotent (every deletion or detachment is conditional on what is still there), and
on PostgreSQL a session advisory lock (:func:`exclusive`) lets one worker sweep at a
time, the others skipping that round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final, TypeVar

import sqlalchemy as sa

log = logging.getLogger(__name__)
T = TypeVar("T")
SWEEP_LOCK_KEY: Final = 0x5F5F_7265_7465  # PostgreSQL advisory lock id of the sweep
STOP_WAIT_S: Final = 60.0


class PeriodicTask:
    """``run`` every ``interval_s`` seconds (> 0) on a daemon thread, the first time
    ``first_delay_s`` (>= 0) after :meth:`start`. ``runs`` and ``failures`` count the
    finished runs. Raises ValueError for a bad interval or delay."""

    def __init__(self, run: Callable[[], object], *, interval_s: float, first_delay_s: float,
                 name: str = "retention-sweep") -> None:
        if not interval_s > 0 or not first_delay_s >= 0:
            raise ValueError("interval_s must be > 0 and first_delay_s >= 0 (seconds)")
        self._run, self._interval, self._first = run, interval_s, first_delay_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.runs = 0
        self.failures = 0

    def start(self) -> PeriodicTask:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = STOP_WAIT_S) -> bool:
        """Stop: no run starts after this; waits up to ``timeout_s`` for one in progress.
        True when the thread has ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("%s still running after %.0f s at shutdown", self._thread.name,
                        timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        delay = self._first
        while not self._stop.wait(delay):
            try:
                outcome = self._run()
                log.info("%s done: %s", self._thread.name, outcome)
            except Exception:  # noqa: BLE001 - logged; the next run comes as planned
                self.failures += 1
                log.exception("%s failed; next run in %.0f s", self._thread.name,
                              self._interval)
            self.runs += 1
            delay = self._interval


def exclusive(engine: sa.Engine, work: Callable[[], T]) -> T | None:
    """``work()`` while holding the sweep's PostgreSQL advisory lock; None (nothing done)
    when another process holds it. On other databases (SQLite: one writer at a time
    anyway) ``work()`` runs as it is."""
    if engine.dialect.name != "postgresql":
        return work()
    with engine.connect() as conn:
        if not conn.scalar(sa.select(sa.func.pg_try_advisory_lock(SWEEP_LOCK_KEY))):
            log.info("retention sweep skipped: another process is sweeping")
            return None
        conn.commit()  # the session-level lock outlives this transaction
        try:
            return work()
        finally:
            conn.scalar(sa.select(sa.func.pg_advisory_unlock(SWEEP_LOCK_KEY)))
            conn.commit()


def start_retention_sweeps(engine: sa.Engine, sweep: Callable[[], object], *,
                           interval_s: float, first_delay_s: float) -> PeriodicTask | None:
    """Start the periodic sweep (None when ``interval_s`` is 0: switched off)."""
    if interval_s <= 0:
        return None
    return PeriodicTask(lambda: exclusive(engine, sweep), interval_s=interval_s,
                        first_delay_s=first_delay_s).start()
