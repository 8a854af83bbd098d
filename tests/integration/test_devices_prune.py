"""``GatewayJournal.prune`` on SQLite and PostgreSQL: deletes inbox and audit rows past
their cuts in bounded batches, keeps stranded claims until the audit cut, is idempotent,
and runs while the gateway keeps writing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.devices.journal import GatewayJournal
from storefront.devices.models import DeviceAudit, DeviceMessage
from storefront.errors import InvalidInput

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


class SetClock:
    """A clock the test moves: returns ``now``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Db:
    engine: sa.Engine
    sessions: sessionmaker[Session]
    clock: SetClock
    journal: GatewayJournal


@pytest.fixture
def db(tmp_path: Path, database: str | None) -> Iterator[Db]:
    engine = make_engine(database or f"sqlite:///{tmp_path / 'prune.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    clock = SetClock(NOW)
    yield Db(engine, sessions, clock, GatewayJournal(sessions, clock))
    engine.dispose()


def _message(d: Db, device: str, seq: int, days_ago: float, outcome: str = "recorded") -> None:
    """One inbox row received ``days_ago`` days before NOW, through the journal."""
    d.clock.now = NOW - timedelta(days=days_ago)
    d.journal.claim(device_id=device, device_seq=seq, type_="heartbeat",
                    device_time=d.clock.now, body={"seq": seq})
    if outcome != "claimed":
        d.journal.settle(device_id=device, device_seq=seq, outcome=outcome, reply=[])
    d.clock.now = NOW


def _audit(d: Db, reason_code: str, days_ago: float) -> None:
    d.clock.now = NOW - timedelta(days=days_ago)
    d.journal.audit(topic="stores/s1/devices/x/events", reason_code=reason_code,
                    reason="refused", payload_bytes=10, device_id="x")
    d.clock.now = NOW


def _inbox(d: Db) -> list[tuple[str, int, str]]:
    with d.sessions() as s:
        rows = s.execute(sa.select(DeviceMessage.device_id, DeviceMessage.device_seq,
                                   DeviceMessage.outcome)
                         .order_by(DeviceMessage.device_id, DeviceMessage.device_seq)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _audit_codes(d: Db) -> list[str]:
    with d.sessions() as s:
        return sorted(s.scalars(sa.select(DeviceAudit.reason_code)).all())


def test_prune_deletes_rows_past_each_cut_and_a_second_run_nothing(db: Db) -> None:
    _message(db, "gate-1", 1, 40, "applied")
    _message(db, "gate-1", 2, 40.0001, "claimed")   # stranded claim, younger than the audit cut
    _message(db, "gate-1", 3, 400, "claimed")       # stranded claim, older than both cuts
    _message(db, "gate-1", 4, 29, "applied")
    _message(db, "plate-1", 1, 31, "recorded")
    _message(db, "plate-1", 2, 0, "claimed")        # in flight
    _audit(db, "old", 366)
    _audit(db, "kept", 364)
    first = db.journal.prune_older_than(messages_days=30, audit_days=365)
    assert (first.messages_deleted, first.audit_deleted, first.claimed_kept) == (3, 1, 1)
    assert first.messages_before == NOW - timedelta(days=30)
    assert first.audit_before == NOW - timedelta(days=365)
    kept = [("gate-1", 2, "claimed"), ("gate-1", 4, "applied"), ("plate-1", 2, "claimed")]
    assert _inbox(db) == kept and _audit_codes(db) == ["kept"]
    second = db.journal.prune_older_than(messages_days=30, audit_days=365)
    assert (second.messages_deleted, second.audit_deleted, second.claimed_kept) == (0, 0, 1)
    assert _inbox(db) == kept and _audit_codes(db) == ["kept"]
    assert second.as_dict() == {"device_messages_deleted": 0, "device_audit_deleted": 0,
                                "claimed_kept": 1,
                                "messages_before": "2027-01-30T12:00:00+00:00",
                                "audit_before": "2026-03-01T12:00:00+00:00"}


def test_a_claim_older_than_both_cuts_goes_when_the_audit_cut_is_the_younger(db: Db) -> None:
    _message(db, "gate-1", 1, 40, "claimed")
    _message(db, "gate-1", 2, 20, "claimed")
    _message(db, "gate-1", 3, 20, "applied")
    report = db.journal.prune(messages_before=NOW - timedelta(days=10),
                              audit_before=NOW - timedelta(days=30))
    assert (report.messages_deleted, report.claimed_kept) == (2, 1)
    assert _inbox(db) == [("gate-1", 2, "claimed")]


def test_a_row_exactly_at_the_cut_is_kept_and_cuts_in_other_zones_are_utc(db: Db) -> None:
    _message(db, "gate-1", 1, 30)
    _message(db, "gate-1", 2, 30.001)
    cut = (NOW - timedelta(days=30)).astimezone(timezone(timedelta(hours=5)))
    report = db.journal.prune(messages_before=cut, audit_before=cut)
    assert report.messages_deleted == 1 and _inbox(db) == [("gate-1", 1, "recorded")]
    assert report.messages_before == NOW - timedelta(days=30)


def test_more_rows_than_one_batch_are_deleted_batch_by_batch(db: Db) -> None:
    """2,345 old inbox rows over 7 devices with young rows between them in key order,
    and 1,050 old audit rows: batches of 100 delete them all, never more than 100 rows
    in one statement, and keep every young row."""
    old, young = NOW - timedelta(days=45), NOW - timedelta(days=2)
    messages = [{"device_id": f"cart-{n % 7}", "device_seq": n, "type": "heartbeat",
                 "received_at": young if n % 10 == 3 else old, "device_time": old,
                 "outcome": "claimed" if n % 10 == 3 else "recorded", "body": None,
                 "reply": None} for n in range(2_606)]
    audits = [{"at": old if n < 1_050 else young, "store_id": "s1", "device_id": "x",
               "topic": "t", "reason_code": "bad_signature", "reason": "r",
               "payload_bytes": 1} for n in range(1_080)]
    with db.sessions.begin() as s:
        s.execute(sa.insert(DeviceMessage), messages)
        s.execute(sa.insert(DeviceAudit), audits)
    deletes: list[tuple[str, int]] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append((statement.split()[2], cursor.rowcount))

    sa.event.listen(db.engine, "after_cursor_execute", count)
    try:
        report = db.journal.prune_older_than(messages_days=30, audit_days=30, batch_size=100)
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", count)
    old_messages = sum(1 for m in messages if m["received_at"] == old)
    assert (report.messages_deleted, report.audit_deleted) == (old_messages, 1_050)
    per_table = {t: [n for name, n in deletes if name == t]
                 for t in ("device_messages", "device_audit")}
    assert len(per_table["device_messages"]) == -(-old_messages // 100)
    assert len(per_table["device_audit"]) == 11
    assert max(n for _, n in deletes) == 100 and sum(n for _, n in deletes) == old_messages + 1_050
    assert len(_inbox(db)) == len(messages) - old_messages
    assert all(outcome == "claimed" for _, _, outcome in _inbox(db))
    assert _audit_codes(db) == ["bad_signature"] * 30


def test_prune_runs_while_the_gateway_writes(db: Db) -> None:
    """A writer claims, settles and audits fresh messages (on the real clock) in a loop
    while prune deletes 1,500 old rows in batches of 50: nothing fails, and every fresh
    row is still there afterwards."""
    live = GatewayJournal(db.sessions, lambda: datetime.now(UTC))
    db.clock.now = datetime.now(UTC)
    old = db.clock.now - timedelta(days=60)
    with db.sessions.begin() as s:
        s.execute(sa.insert(DeviceMessage), [
            {"device_id": f"gate-{n % 3}", "device_seq": n, "type": "heartbeat",
             "received_at": old, "device_time": old, "outcome": "recorded", "body": None,
             "reply": None} for n in range(1_500)])
    errors: list[BaseException] = []
    started = threading.Event()

    def gateway() -> None:
        try:
            for seq in range(10_000, 10_060):
                live.claim(device_id="gate-1", device_seq=seq, type_="heartbeat",
                           device_time=datetime.now(UTC), body=None)
                started.set()
                live.settle(device_id="gate-1", device_seq=seq, outcome="recorded", reply=[])
                live.audit(topic="t", reason_code="live", reason="r", payload_bytes=1)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
            started.set()

    writer = threading.Thread(target=gateway)
    writer.start()
    started.wait(10)
    report = db.journal.prune_older_than(messages_days=30, audit_days=30, batch_size=50)
    writer.join()
    assert errors == [] and report.messages_deleted == 1_500
    assert _inbox(db) == [("gate-1", seq, "recorded") for seq in range(10_000, 10_060)]
    assert _audit_codes(db) == ["live"] * 60


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"messages_before": datetime(2027, 1, 1), "audit_before": NOW - timedelta(days=400)},
     "timezone-aware"),
    ({"messages_before": NOW - timedelta(hours=23), "audit_before": NOW - timedelta(days=400)},
     "messages_before"),
    ({"messages_before": NOW - timedelta(days=40), "audit_before": NOW + timedelta(days=1)},
     "audit_before"),
    ({"messages_before": NOW - timedelta(days=40), "audit_before": NOW - timedelta(days=40),
      "batch_size": 0}, "batch_size"),
])
def test_unsafe_cuts_are_refused_and_nothing_is_deleted(
        tmp_path: Path, kwargs: dict[str, Any], reason: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'prune.db'}")
    upgrade(engine)
    sessions, clock = sessionmaker(engine, expire_on_commit=False), SetClock(NOW)
    d = Db(engine, sessions, clock, GatewayJournal(sessions, clock))
    _message(d, "gate-1", 1, 500)
    try:
        with pytest.raises(InvalidInput, match=reason):
            d.journal.prune(**kwargs)
        for days in ({"messages_days": 0, "audit_days": 365},
                     {"messages_days": 30, "audit_days": -1}):
            with pytest.raises(InvalidInput, match="at least 1"):
                d.journal.prune_older_than(**days)
        assert _inbox(d) == [("gate-1", 1, "recorded")]
    finally:
        engine.dispose()
