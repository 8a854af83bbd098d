"""One entry at a time per shopper, across every process that opens sessions.

Two gates can scan the same palm at the same moment, in the API process and in the MQTT
gateway process (``storefront devices run``), which share the database. Entering checks
the shopper's open sessions, places the entry hold (a processor call) and opens the
session: without a lock both entries see no open session and both open one, and the
shopper is in the store twice. :class:`EntryLocks` serialises those steps per shopper
without holding a database write lock across the processor call:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) keyed by the
  shopper (64 bits of SHA-256 of a namespaced id); it blocks only another entry of the
  same shopper (or, rarely, of a shopper whose key collides). The lock lives on a
  connection of a pool of its own (``LOCK_POOL_SIZE`` at most), never the service's,
  so entries holding locks cannot starve the work they do of connections; a waiting
  entry holds no connection between its tries.
- SQLite file: an exclusive ``flock`` on one of ``LOCK_BUCKETS`` lock files next to the
  database file (``<db>.entry-locks/<bucket>``), which every process on the machine
  shares; an in-memory database (one process) uses a thread lock per bucket.

The lock waits at most ``timeout_s`` seconds and then raises :class:`EntryBusy`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from storefront.errors import Conflict

log = logging.getLogger(__name__)
LOCK_BUCKETS = 256
LOCK_POOL_SIZE = 64  # PostgreSQL connections held by entries in progress, at most
_NAMESPACE = b"storefront.entry:"
_POLL_S = 0.02


class EntryBusy(Conflict):
    """Another entry of the same shopper held the lock for longer than the timeout."""


def _digest(shopper_id: str) -> bytes:
    return hashlib.sha256(_NAMESPACE + shopper_id.encode()).digest()


def advisory_key(shopper_id: str) -> int:
    """The signed 64-bit PostgreSQL advisory-lock key of a shopper's entries."""
    return int.from_bytes(_digest(shopper_id)[:8], "big", signed=True)


def bucket_of(shopper_id: str) -> int:
    """The lock-file bucket (0 .. LOCK_BUCKETS - 1) of a shopper's entries."""
    return int.from_bytes(_digest(shopper_id)[:4], "big") % LOCK_BUCKETS


class EntryLocks:
    """Per-shopper entry locks over ``engine``'s database (see the module docstring)."""

    def __init__(self, engine: sa.Engine, *, timeout_s: float = 30.0) -> None:
        self._engine = engine
        self._lock_engine: sa.Engine | None = None
        self._engine_lock = threading.Lock()
        self._timeout_s = timeout_s
        self._threads = [threading.Lock() for _ in range(LOCK_BUCKETS)]
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._folder = (Path(f"{database}.entry-locks")
                        if database and database != ":memory:"
                        and not database.startswith("file:") else None)

    @contextlib.contextmanager
    def hold(self, shopper_id: str) -> Iterator[None]:
        """Hold the shopper's entry lock for the ``with`` block.

        Raises EntryBusy after ``timeout_s`` seconds of waiting.
        """
        if self._engine.dialect.name == "postgresql":
            with self._advisory(shopper_id):
                yield
            return
        thread_lock = self._threads[bucket_of(shopper_id)]
        if not thread_lock.acquire(timeout=self._timeout_s):
            raise EntryBusy(_busy(shopper_id))
        try:
            if self._folder is None:
                yield
                return
            with self._file_lock(shopper_id):
                yield
        finally:
            thread_lock.release()

    def _locks_engine(self) -> sa.Engine:
        """The engine of the lock connections: the service's URL, a pool of its own."""
        with self._engine_lock:
            if self._lock_engine is None:
                self._lock_engine = sa.create_engine(
                    self._engine.url, pool_size=2, max_overflow=LOCK_POOL_SIZE - 2,
                    pool_timeout=self._timeout_s, pool_pre_ping=True)
            return self._lock_engine

    def close(self) -> None:
        """Close the lock connections (PostgreSQL)."""
        with self._engine_lock:
            if self._lock_engine is not None:
                self._lock_engine.dispose()
                self._lock_engine = None

    @contextlib.contextmanager
    def _advisory(self, shopper_id: str) -> Iterator[None]:
        key, engine = advisory_key(shopper_id), self._locks_engine()
        deadline = time.monotonic() + self._timeout_s
        while True:
            conn = engine.connect()
            try:
                held = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                         {"k": key}).scalar())
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if held:
                break
            conn.close()  # no connection held while waiting
            if time.monotonic() > deadline:
                raise EntryBusy(_busy(shopper_id))
            time.sleep(_POLL_S)
        try:
            yield
        finally:
            _unlock(conn, key)

    @contextlib.contextmanager
    def _file_lock(self, shopper_id: str) -> Iterator[None]:
        assert self._folder is not None
        self._folder.mkdir(mode=0o700, exist_ok=True)
        path = self._folder / f"{bucket_of(shopper_id):03d}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self._timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EntryBusy(_busy(shopper_id)) from None
                    time.sleep(_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _unlock(conn: sa.Connection, key: int) -> None:
    """Release the advisory lock and return the connection. A connection the server
    dropped released its locks with it: that is logged, not raised (the entry is done)."""
    try:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
    except sa.exc.DBAPIError:
        log.warning("entry lock connection lost before its unlock (its lock went with it)")
        conn.invalidate()
    finally:
        conn.close()


def _busy(shopper_id: str) -> str:
    return (f"another entry of shopper {shopper_id} is still being processed; "
            "try again in a moment")
