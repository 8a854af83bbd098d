"""``storefront devices prune [--messages-days N] [--audit-days M] [--json]`` on SQLite and
PostgreSQL: deletes the gateway's old inbox and audit rows (defaults 30 and 365 days),
prints the rows deleted per table, deletes nothing more on a second run, and refuses
bad periods with exit 2 and a reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from storefront.cli import app
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.devices.models import DeviceAudit, DeviceMessage


@pytest.fixture
def db(tmp_path: Path, database: str | None,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    """A migrated store database the CLI is pointed at, with inbox rows 10, 40 and 400
    days old (the 400-day one still claimed) and audit rows 40, 300 and 400 days old."""
    state = tmp_path / "store"
    state.mkdir()
    engine = make_engine(database or f"sqlite:///{state / 'storefront.db'}")
    upgrade(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    with sessions.begin() as s:
        for seq, days, outcome in ((1, 10, "applied"), (2, 40, "recorded"),
                                   (3, 400, "claimed"), (4, 40, "claimed")):
            at = now - timedelta(days=days)
            s.add(DeviceMessage(device_id="gate-1", device_seq=seq, type="heartbeat",
                                received_at=at, device_time=at, outcome=outcome, body=None))
        for days in (40, 300, 400):
            s.add(DeviceAudit(at=now - timedelta(days=days), topic="t", reason_code=f"d{days}",
                              reason="r", payload_bytes=1))
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    monkeypatch.delenv("STOREFRONT_MQTT_REPLAY_WINDOW_S", raising=False)
    if database is None:
        monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("STOREFRONT_DATABASE_URL", database)
    yield sessions
    engine.dispose()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["devices", "prune", *args])
    return result.exit_code, " ".join(result.output.split())


def _left(sessions: sessionmaker[Session]) -> tuple[list[int], list[str]]:
    with sessions() as s:
        seqs = s.scalars(sa.select(DeviceMessage.device_seq).order_by(DeviceMessage.device_seq))
        codes = s.scalars(sa.select(DeviceAudit.reason_code).order_by(DeviceAudit.reason_code))
        return list(seqs), list(codes)


def test_defaults_keep_30_days_of_inbox_and_365_of_audit_and_rerun_deletes_nothing(
        db: sessionmaker[Session]) -> None:
    code, out = _run()
    assert code == 0, out
    assert "device_messages: 2 rows deleted" in out and "device_audit: 1 rows deleted" in out
    assert "kept 1 inbox rows still claimed" in out
    assert _left(db) == ([1, 4], ["d300", "d40"])
    code, out = _run()
    assert code == 0 and "device_messages: 0 rows deleted" in out, out
    assert "device_audit: 0 rows deleted" in out
    assert _left(db) == ([1, 4], ["d300", "d40"])


def test_json_summary_with_chosen_periods(db: sessionmaker[Session]) -> None:
    result = CliRunner().invoke(app, ["devices", "prune", "--messages-days", "5",
                                      "--audit-days", "30", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert {k: summary[k] for k in ("device_messages_deleted", "device_audit_deleted",
                                    "claimed_kept")} == {
        "device_messages_deleted": 4, "device_audit_deleted": 3, "claimed_kept": 0}
    cut = datetime.fromisoformat(summary["messages_before"])
    assert timedelta(days=5) - timedelta(minutes=5) < datetime.now(UTC) - cut
    assert _left(db) == ([], [])


@pytest.mark.parametrize(("args", "reason"), [
    (["--messages-days", "0"], "--messages-days"),
    (["--audit-days", "0"], "--audit-days"),
    (["--messages-days", "-3", "--json"], "--messages-days"),
    (["--audit-days", "a year"], "--audit-days"),
])
def test_bad_periods_exit_2_with_a_reason_and_delete_nothing(
        db: sessionmaker[Session], args: list[str], reason: str) -> None:
    code, out = _run(*args)
    assert code == 2 and reason in out, out
    assert _left(db) == ([1, 2, 3, 4], ["d300", "d40", "d400"])


def test_an_inbox_period_shorter_than_twice_the_replay_window_is_refused(
        db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_MQTT_REPLAY_WINDOW_S", "86400")
    code, out = _run("--messages-days", "1")
    assert code == 2 and "twice the replay window" in out, out
    assert _left(db) == ([1, 2, 3, 4], ["d300", "d40", "d400"])
    code, out = _run("--messages-days", "2")
    assert code == 0 and "device_messages: 3 rows deleted" in out, out


def test_a_missing_database_is_an_error_and_nothing_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "typo"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    code, out = _run()
    assert code == 2 and "no database at" in out, out
    assert not (tmp_path / "typo").exists()


def test_a_database_without_the_gateway_tables_is_refused_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "store"
    state.mkdir()
    engine = sa.create_engine(f"sqlite:///{state / 'storefront.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE unrelated (x INTEGER)"))
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    try:
        code, out = _run()
        assert code == 2 and "no device_messages table" in out, out
        assert sa.inspect(engine).get_table_names() == ["unrelated"]
    finally:
        engine.dispose()
