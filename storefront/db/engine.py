"""Database engine construction for SQLite (embedded default) and PostgreSQL.

SQLite durability: the file runs in WAL mode with ``synchronous=NORMAL``. A committed
transaction then survives the *process* being killed at any moment (SIGKILL, a crash:
what ``benchmarks/chaos_checkout.py`` exercises), but not necessarily a power cut or an
operating-system crash: WAL frames are synced at checkpoints, not at every commit, so
transactions committed shortly before a power loss may be rolled back (the file stays
consistent). Payment state is the exception: the payment journal commits through
:func:`durable_begin`, which syncs the WAL at commit (``synchronous=FULL`` for that
transaction), so the state written before and after each processor call survives a
power cut too, and with it everything committed earlier. PostgreSQL syncs every commit.

SQLite writers in one process: SQLite lets one connection write at a time and makes
the others wait by sleeping and polling (its busy handler: 1, 2, 5, 10 ... ms naps), so
many threads writing at once spend their time asleep while the lock is free. The
connections of :func:`make_engine` therefore queue on a lock of the process, per
database file, from the statement that opens their write transaction to its commit or
rollback (:class:`GatedConnection`); other processes still meet SQLite's own locking.

SQLite file mode: the database holds e-mails, names, processor tokens and export
archives, so its file is created 0600 (owner only) before SQLite opens it; SQLite
creates the ``-wal`` and ``-shm`` files with the database file's mode. An existing file
(and its ``-wal``/``-shm``) readable or writable by others is tightened to 0600 when an
engine is made, with a warning logged.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
DB_FILE_MODE = 0o600
"""The mode of a SQLite database file and its ``-wal`` / ``-shm`` files."""


def make_engine(url: str) -> sa.Engine:
    """Create an engine for ``url``; a SQLite file's folder is created on first use.

    SQLite gets foreign keys on, WAL journaling with ``synchronous=NORMAL`` (see the
    module docstring), a busy timeout of ``BUSY_TIMEOUT_S`` so that the API server and a
    CLI command can share the file, and :class:`GatedConnection` connections (writers of
    one process queue on a lock instead of napping in SQLite's busy handler). The file
    is created 0600, an existing one tightened to 0600 (:func:`private_sqlite_file`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" \
            and not parsed.database.startswith("file:"):
        private_sqlite_file(Path(parsed.database))
    engine = sa.create_engine(url, connect_args={
        "check_same_thread": False, "timeout": BUSY_TIMEOUT_S, "factory": GatedConnection})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def private_sqlite_file(path: Path) -> None:
    """Make ``path`` (a SQLite database file) private to its owner: create its folder and
    an empty file (a valid empty database) with mode 0600 when it does not exist; tighten
    the file and its ``-wal`` / ``-shm`` to 0600, logging a warning, when group or others
    have any access. Raises OSError when the folder or file cannot be made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(name.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(name, DB_FILE_MODE)
            log.warning("database file %s was mode %04o (readable by others); set to 0600",
                        name, mode)


BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for the write lock (in the process, then in SQLite)."""

_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")  # what makes sqlite3 open a transaction
# Blanks and SQL comments before a statement's first keyword (sqlite3 skips them too).
_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


def _gate_of(database: object) -> threading.Lock | None:
    """The process's writer lock of a database file (None for an in-memory database)."""
    name = os.fspath(database) if isinstance(database, str | os.PathLike) else ""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    key = os.path.realpath(name)
    with _gates_lock:
        return _gates.setdefault(key, threading.Lock())


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that queues its write transactions on the process's lock of
    the database file (see the module docstring).

    The lock is taken before the statement that opens a write transaction (sqlite3
    opens one before INSERT, UPDATE, DELETE and REPLACE, after any leading comments) and
    given back once the transaction has ended (commit, rollback, the end of a
    ``with conn:`` block, a failed first statement, close). A writer that cannot have it
    within ``BUSY_TIMEOUT_S`` goes on to SQLite's own locking, which
    decides as it would have without the lock; a transaction opened otherwise (an
    explicit ``BEGIN``) does not take it.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._gate = _gate_of(database)
        self._holding = False

    def cursor(self, factory: Any = None) -> Any:  # noqa: D102 - sqlite3's own
        return super().cursor(factory or _GatedCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # noqa: D102
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:  # noqa: D102
        return self.cursor().executemany(sql, parameters)

    def commit(self) -> None:  # noqa: D102
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:  # noqa: D102
        try:
            super().rollback()
        finally:
            self._release()

    def __exit__(self, *exc: Any) -> Any:  # ``with conn:`` commits or rolls back in C
        try:
            return super().__exit__(*exc)
        finally:
            self._release()

    def executescript(self, sql_script: str, /) -> Any:  # noqa: D102 - commits first
        try:
            return super().executescript(sql_script)
        finally:
            self._release()

    def close(self) -> None:  # noqa: D102
        try:
            super().close()
        finally:
            if self._holding and self._gate is not None:
                self._holding = False
                self._gate.release()

    def _before(self, sql: str) -> None:
        """Queue for the lock when ``sql`` is about to open a write transaction."""
        if self._gate is None or self._holding or self.in_transaction:
            return
        start = _LEADING.match(sql)
        if sql[start.end() if start else 0:][:7].upper().startswith(_DML):
            self._holding = self._gate.acquire(timeout=BUSY_TIMEOUT_S)

    def _release(self) -> None:
        """Give the lock back once no transaction is open (any more)."""
        if self._holding and not self.in_transaction:
            self._holding = False
            assert self._gate is not None
            self._gate.release()


class _GatedCursor(sqlite3.Cursor):
    """The cursor of :class:`GatedConnection`: its statements pass the writer lock."""

    connection: GatedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # noqa: D102
        self.connection._before(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection._release()

    def executemany(self, sql: str, parameters: Any, /) -> Any:  # noqa: D102
        self.connection._before(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self.connection._release()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def bound_engine(sessions: sessionmaker[Session]) -> sa.Engine:
    """The engine ``sessions`` is bound to; raises TypeError when it is bound to none."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, sa.Engine):
        raise TypeError("the session factory is not bound to an engine")
    return bind


@contextmanager
def durable_begin(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction on a connection of ``engine`` whose commit is durable against power
    loss, not only against the process dying; commits on leaving the block, rolls back
    on an exception (which propagates).

    On SQLite the transaction runs with ``synchronous=FULL`` (the WAL is synced when it
    commits, which makes every earlier commit durable as well; about one fsync) and the
    connection's own level is restored afterwards. On other databases it is a plain
    transaction: they sync every commit.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        # On the driver's connection, outside any transaction (SQLite refuses to change
        # the level inside one): no statement of SQLAlchemy's, no transaction begun.
        driver = conn.connection.driver_connection
        if driver is None or driver.in_transaction:
            raise RuntimeError("durable_begin needs a connection outside a transaction")
        level = int(driver.execute("PRAGMA synchronous").fetchone()[0])
        driver.execute("PRAGMA synchronous=FULL")
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                driver.execute(f"PRAGMA synchronous={level}")
            except sqlite3.Error:  # not back at its level: never hand it out again (what
                conn.invalidate()  # was committed stays committed, so nothing is raised)
