"""The SQLite database file and its -wal/-shm files are private to the owner (0600): made
so when new, tightened with a warning when an existing file was readable by others."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from storefront.db.engine import make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_wal_files_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.db"
    old = os.umask(0o022)  # a usual umask: new files would be 0644
    try:
        engine = make_engine(f"sqlite:///{path}")
        assert _mode(path) == 0o600  # before SQLite opened it
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
            conn.execute(sa.text("INSERT INTO t VALUES ('ann@example.org')"))
        with engine.connect() as conn:  # a reader keeps the -wal and -shm files
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
            for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert _mode(name) == 0o600, name
        engine.dispose()
    finally:
        os.umask(old)


def test_an_existing_loose_database_is_tightened_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x TEXT)")
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")
    os.chmod(path, 0o644)
    os.chmod(wal, 0o664)
    with caplog.at_level(logging.WARNING, logger="storefront.db.engine"):
        engine = make_engine(f"sqlite:///{path}")
    assert _mode(path) == 0o600 and _mode(wal) == 0o600
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and "0644" in warned[0] and "0664" in warned[1]
    with engine.connect() as conn:  # the data is still there
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()
    caplog.clear()
    make_engine(f"sqlite:///{path}").dispose()  # already private: no warning
    assert caplog.records == []


def test_memory_databases_and_postgres_urls_create_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_engine("sqlite://").dispose()
    make_engine("sqlite:///:memory:").dispose()
    make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none").dispose()
    assert list(tmp_path.iterdir()) == []
