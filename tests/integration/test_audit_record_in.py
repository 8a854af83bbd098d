"""``Audit.record_in`` appends inside the caller's transaction, on SQLite and PostgreSQL:
the entries commit with the caller's change or roll back with it, a bad entry leaves the
caller's transaction as it was, and writers appending in their own transactions (the
very first append included, before the head row exists) and plain ``record`` calls all
land once with the hash chain intact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import utc_now
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.db.models import CashDrawer
from storefront.errors import InvalidInput
from storefront.security.audit import Audit, NewEntry

WRITERS = 6
CALLS = 8


@pytest.fixture
def db(tmp_path: Path, database: str | None) -> Iterator[sessionmaker[Session]]:
    """A migrated database (SQLite file or a fresh PostgreSQL database) and its sessions."""
    engine = make_engine(database or f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _drawer(drawer_id: str) -> CashDrawer:
    """A row of another table, standing for the caller's own change."""
    return CashDrawer(id=drawer_id, till_id=drawer_id, open_till=drawer_id, currency="GBP",
                      float_minor=0, opened_by="ann", opened_at=datetime(2026, 3, 2, tzinfo=UTC))


def test_entries_commit_with_the_callers_change(db: sessionmaker[Session]) -> None:
    audit = Audit(db, utc_now)
    audit.record(actor="a", action="compare", subject="shopper:before")
    with db.begin() as s:
        s.add(_drawer("d1"))
        s.flush()
        [made] = audit.record_in(s, [NewEntry("staff:ann", "tender", "session:s1", {"n": 1})])
    assert made.seq == 2
    [stored] = audit.entries(after_seq=1)
    assert (stored.seq, stored.hash, stored.details) == (2, made.hash, {"n": 1})
    with db() as s:
        assert s.get(CashDrawer, "d1") is not None
    assert audit.verify().ok


@pytest.mark.parametrize("first", [True, False])
def test_entries_roll_back_with_the_callers_change(db: sessionmaker[Session],
                                                   first: bool) -> None:
    """Rolled back with the caller: neither the change nor the entry nor the head moved,
    also when it would have been the very first entry."""
    audit = Audit(db, utc_now)
    if not first:
        audit.record(actor="a", action="compare", subject="shopper:before")
    head = audit.verify()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.begin() as s:
        s.add(_drawer("d1"))
        s.flush()
        audit.record_in(s, [NewEntry("staff:ann", "tender", "session:s1")])
        raise Boom
    with db() as s:
        assert s.get(CashDrawer, "d1") is None
    after = audit.verify()
    assert after.ok and (after.head_seq, after.head_hash) == (head.head_seq, head.head_hash)
    audit.record(actor="a", action="compare", subject="shopper:after")
    assert audit.verify().ok and audit.verify().head_seq == head.head_seq + 1


def test_a_bad_entry_appends_nothing_and_leaves_the_callers_change(
        db: sessionmaker[Session]) -> None:
    audit = Audit(db, utc_now)
    with db.begin() as s:
        s.add(_drawer("d1"))
        s.flush()
        with pytest.raises(InvalidInput):
            audit.record_in(s, [NewEntry("staff:ann", "tender", "session:s1"),
                                NewEntry("staff:ann", "no_such_action", "session:s1")])
    with db() as s:
        assert s.get(CashDrawer, "d1") is not None
    assert audit.entries() == [] and audit.verify().head_seq == 0


def test_joined_and_plain_writers_at_once_all_land_once(db: sessionmaker[Session]) -> None:
    """Half the writers append inside their own transactions (each with a change of its
    own), half with ``record``, all starting on an empty log: the first append races for
    the head row and the loser retries from its savepoint, keeping its change."""
    audit = Audit(db, utc_now)
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write(writer: int) -> None:
        start.wait()
        for call in range(CALLS):
            try:
                if writer % 2:
                    audit.record(actor=f"w{writer}", action="compare", subject=f"c{call}")
                    continue
                with db.begin() as s:
                    s.add(_drawer(f"w{writer}c{call}"))
                    s.flush()
                    audit.record_in(s, [NewEntry(f"w{writer}", "compare", f"c{call}")])
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = audit.verify()
    assert report.ok and report.head_seq == WRITERS * CALLS
    landed = {(e.actor, e.subject) for e in audit.entries(limit=WRITERS * CALLS)}
    assert len(landed) == WRITERS * CALLS
    with db() as s:
        drawers = s.scalar(sa.select(sa.func.count()).select_from(CashDrawer))
    assert drawers == (WRITERS + 1) // 2 * CALLS
