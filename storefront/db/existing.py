"""Open a storefront database that must already exist (CLI commands that only read or
tidy one): nothing is created on a wrong URL or a missing SQLite file.

:func:`reading_engine` looks into a database without changing its folder: the checks a
command runs before it refuses (is this a storefront database, at a revision this
version knows, do the key files open its data keys?) leave a SQLite file and its
``-wal``/``-shm`` files as they found them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.errors import NotFound


def require_database_file(url: str) -> None:
    """Raise NotFound when ``url`` names a SQLite file that does not exist (other
    databases are checked by :func:`existing_database`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise NotFound(f"no database at {parsed.database} (check STOREFRONT_STATE_DIR or "
                       f"STOREFRONT_DATABASE_URL); nothing was created")


SIDECARS = ("-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps beside a database file."""


def reading_engine(url: str, *, timeout: float = 30.0) -> sa.Engine:
    """An engine for checks that only read the database at ``url``, leaving a SQLite
    file's folder as it found it: the file is never created (a missing one fails on
    connect) and every SQLite connection refuses writes (``PRAGMA query_only``); dispose
    of it when done.

    A SQLite file in WAL mode gets ``-wal`` and ``-shm`` files from any connection, and a
    read-only one (``mode=ro``) cannot remove them when it closes: a check that refused
    would leave them behind. So when none of :data:`SIDECARS` exists, the file is opened
    read-write (not created) with writes refused, and the last connection to close
    removes the two files as SQLite does (another process's open connection keeps them:
    they are its own); when one exists (a running server, a crash), it is opened read
    only, so that they are kept and a hot journal is not rolled back. ``timeout``:
    SQLite's busy timeout, seconds. Other databases (and in-memory or ``file:`` SQLite
    URLs): a plain engine, as ``sa.create_engine(url)``.
    """
    parsed = make_url(url)
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url)
    if not name or name == ":memory:" or name.startswith("file:"):
        return sa.create_engine(url, connect_args={"timeout": timeout})
    path = Path(name).resolve()

    def connect() -> sqlite3.Connection:
        present = any(Path(f"{path}{suffix}").exists() for suffix in SIDECARS)
        conn = sqlite3.connect(f"{path.as_uri()}?mode={'ro' if present else 'rw'}",
                               uri=True, timeout=timeout)
        try:
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    return sa.create_engine(url, creator=connect)


@contextmanager
def existing_database(url: str, table: str, what: str) -> Iterator[sa.Engine]:
    """An engine on the database at ``url``, migrated to the latest revision, disposed of
    on exit. Raises NotFound (before creating anything) for a missing SQLite file or a
    database without ``table`` (``what`` names it in the reason: not a storefront
    database?)."""
    require_database_file(url)
    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table(table):
            shown = make_url(url).render_as_string(hide_password=True)
            raise NotFound(f"the database {shown} has no {what} table (not a storefront "
                           f"database?)")
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
