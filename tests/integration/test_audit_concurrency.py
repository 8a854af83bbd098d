"""Many threads appending to the audit log at once, on SQLite and PostgreSQL: every call
succeeds (writers queue on the head row instead of exhausting their retries), each
``record_many`` batch lands as one contiguous run, and the hash chain verifies."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from storefront.clock import utc_now
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.security.audit import Audit, NewEntry

WRITERS = 8
CALLS = 15
BATCH = 3


def _batch(writer: int, call: int) -> list[NewEntry]:
    return [NewEntry(f"worker:{writer}", "compare", f"shopper:w{writer}c{call}",
                     {"part": k}) for k in range(BATCH)]


def test_concurrent_writers_all_land_contiguously(tmp_path: Path,
                                                  database: str | None) -> None:
    engine = make_engine(database or f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine)
    audit = Audit(sessionmaker(engine, expire_on_commit=False), utc_now)
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write(writer: int) -> None:
        start.wait()
        for call in range(CALLS):
            try:
                audit.record_many(_batch(writer, call))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        report = audit.verify()
        assert report.ok and report.head_seq == WRITERS * CALLS * BATCH
        rows = audit.entries(limit=WRITERS * CALLS * BATCH)
        for first in range(0, len(rows), BATCH):
            run = rows[first:first + BATCH]
            assert len({r.subject for r in run}) == 1
            assert [r.details["part"] for r in run] == list(range(BATCH))
    finally:
        engine.dispose()


def test_the_head_row_is_locked_before_the_last_entry_is_read(tmp_path: Path) -> None:
    """On SQLite the append first takes the write lock (a no-op UPDATE of the head row),
    then reads the head and the last entry, so a second writer cannot read the same
    last entry."""
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine)
    audit = Audit(sessionmaker(engine, expire_on_commit=False), utc_now)
    audit.record(actor="a", action="compare", subject="shopper:x")
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *a: seen.append(a[2]))
    audit.record(actor="a", action="compare", subject="shopper:y")
    engine.dispose()
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert "audit_head" in selects[0] and "audit_log" in selects[1]
    assert seen[0].lstrip().upper().startswith("UPDATE AUDIT_HEAD")
