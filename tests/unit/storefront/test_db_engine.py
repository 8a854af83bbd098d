"""SQLite engines: writers of one process queue on a lock (no busy-handler naps), and
durable transactions sync the WAL at commit."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from storefront.db import engine as engine_module
from storefront.db.engine import GatedConnection, durable_begin, make_engine


def _connect(path: Path, timeout: float = 5.0) -> GatedConnection:
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False,
                           factory=GatedConnection)
    assert isinstance(conn, GatedConnection)
    return conn


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "gate.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER)")
    return path


def test_a_second_writer_waits_on_the_lock_and_writes_after_the_commit(database: Path) -> None:
    first, second = _connect(database), _connect(database)
    first.execute("INSERT INTO t VALUES (1)")  # opens the write transaction: lock taken
    done = threading.Event()

    def write() -> None:
        second.execute("INSERT INTO t VALUES (2)")
        second.commit()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)
    assert not done.is_set()  # queued behind the first writer
    first.commit()
    writer.join(timeout=5)
    assert done.is_set()
    assert sorted(r[0] for r in first.execute("SELECT x FROM t")) == [1, 2]


def test_the_lock_is_given_back_however_the_transaction_ends(database: Path) -> None:
    conn = _connect(database)
    gate = engine_module._gate_of(database)
    assert gate is not None and gate is _connect(database)._gate  # one lock per file
    reads = conn.execute("SELECT count(*) FROM t")
    assert reads.fetchone() == (0,) and not gate.locked()  # reading takes no lock
    for end in (conn.commit, conn.rollback):
        conn.execute("UPDATE t SET x = 1")
        assert gate.locked()
        end()
        assert not gate.locked()
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("INSERT INTO no_such_table VALUES (1)")  # fails before any write
    assert not gate.locked()
    conn.execute("DELETE FROM t")
    conn.close()
    assert not gate.locked()
    assert engine_module._gate_of(":memory:") is None


def test_a_writer_that_cannot_get_the_lock_meets_sqlite_locking(
        database: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_S", 0.1)
    first, second = _connect(database), _connect(database, timeout=0.1)
    first.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        second.execute("INSERT INTO t VALUES (2)")  # as without the lock: SQLite refuses
    first.commit()
    second.rollback()
    second.execute("INSERT INTO t VALUES (3)")
    second.commit()


def test_engine_connections_are_gated(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with engine.connect() as conn:
        assert isinstance(conn.connection.driver_connection, GatedConnection)
    engine.dispose()


def test_durable_begin_syncs_fully_and_restores_the_level(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")

    def level(conn: sa.Connection) -> int:
        driver = conn.connection.driver_connection
        assert driver is not None
        return int(driver.execute("PRAGMA synchronous").fetchone()[0])

    with durable_begin(engine) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert level(conn) == 2  # FULL
    with pytest.raises(RuntimeError, match="boom"), durable_begin(engine) as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    with engine.connect() as conn:  # the pool hands the same connection back
        assert level(conn) == 1  # NORMAL again
        assert conn.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
    engine.dispose()


def test_the_lock_comes_back_after_with_connection(database: Path) -> None:
    """``with conn:`` commits in sqlite3's C code, not through commit(): the lock must
    still be given back, or every later writer would wait out the timeout."""
    conn = _connect(database)
    with conn:
        conn.execute("INSERT INTO t VALUES (1)")
    gate = engine_module._gate_of(str(database))
    assert gate is not None and not conn.in_transaction
    assert gate.acquire(timeout=0.1)
    gate.release()


@pytest.mark.parametrize("sql", ["/* note */ INSERT INTO t VALUES (1)",
                                 "-- note\n  INSERT INTO t VALUES (1)"])
def test_a_write_after_a_comment_takes_the_lock(database: Path, sql: str) -> None:
    conn = _connect(database)
    conn.execute(sql)
    gate = engine_module._gate_of(str(database))
    assert conn.in_transaction and gate is not None
    assert not gate.acquire(timeout=0.05)  # held by the open write transaction
    conn.commit()
    assert gate.acquire(timeout=0.1)
    gate.release()
