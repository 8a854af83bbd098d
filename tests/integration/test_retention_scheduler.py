"""The retention sweep runs by itself inside ``storefront serve``: a periodic task (short
intervals injected here, no long sleeps) that survives a failing run, stops at shutdown,
is started by the app's lifespan, and on PostgreSQL lets one process sweep at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.db.engine import make_engine
from storefront.db.models import PalmTemplate
from storefront.privacy.scheduler import (
    SWEEP_LOCK_KEY,
    PeriodicTask,
    exclusive,
    start_retention_sweeps,
)
from storefront.settings import Settings


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_runs_periodically_and_stops() -> None:
    calls: list[float] = []
    task = PeriodicTask(lambda: calls.append(time.monotonic()), interval_s=0.02,
                        first_delay_s=0.0).start()
    assert _until(lambda: len(calls) >= 3)
    assert task.stop(timeout_s=5) is True
    done = len(calls)
    time.sleep(0.1)
    assert len(calls) == done and task.runs == done and task.failures == 0


def test_first_run_waits_for_its_delay() -> None:
    ran = threading.Event()
    task = PeriodicTask(ran.set, interval_s=0.01, first_delay_s=30.0).start()
    assert not ran.wait(0.2)  # nothing before the first delay
    assert task.stop(timeout_s=5) and task.runs == 0


def test_a_failing_run_is_logged_and_the_next_one_comes(
        caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter([RuntimeError("database is down"), None, None])

    def run() -> None:
        error = next(outcomes, None)
        if error is not None:
            raise error

    with caplog.at_level(logging.ERROR, logger="storefront.privacy.scheduler"):
        task = PeriodicTask(run, interval_s=0.01, first_delay_s=0.0).start()
        assert _until(lambda: task.runs >= 3)
        task.stop(timeout_s=5)
    assert task.failures == 1
    assert any("failed" in r.message and r.exc_info for r in caplog.records)


@pytest.mark.parametrize(("interval", "delay"), [(0.0, 0.0), (-1.0, 0.0), (1.0, -0.5)])
def test_bad_timings_are_refused(interval: float, delay: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        PeriodicTask(lambda: None, interval_s=interval, first_delay_s=delay)


def test_interval_zero_switches_it_off(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert start_retention_sweeps(engine, lambda: None, interval_s=0,
                                      first_delay_s=0) is None
    finally:
        engine.dispose()


def test_settings_refuse_bad_intervals() -> None:
    for bad in ({"retention_sweep_interval_s": -1}, {"retention_sweep_first_delay_s": -1},
                {"export_ttl_days": 0}, {"export_max_live": 0}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


def test_the_served_app_sweeps_by_itself(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Palm data unused for 800 days is deleted by the running server, with no command."""
    long_ago = datetime.now(UTC) - timedelta(days=800)
    settings = Settings(data_dir=tmp_path / "store", retention_sweep_interval_s=0.05,
                        retention_sweep_first_delay_s=0.0)
    c = bootstrap(settings, clock=lambda: long_ago)
    sid = c.shoppers.register(display_name="Old", payment_token="tok_old").id
    c.shoppers.enrol_palm(shopper_id=sid, consent_text_version="2026-11", images=[
        encode_png(SyntheticPalms(5).capture(0, k)) for k in range(3)])
    c.close()

    def templates() -> int:
        with client.app.state.container.db() as db:  # type: ignore[attr-defined]
            return int(db.scalar(sa.select(sa.func.count()).select_from(PalmTemplate)) or 0)

    def deleted_by() -> list[str]:
        entries = client.app.state.container.audit.entries(  # type: ignore[attr-defined]
            subject=f"shopper:{sid}")
        return [e.actor for e in entries if e.action == "delete"]

    with TestClient(create_app(settings=settings)) as client:
        assert _until(lambda: deleted_by() != [])  # recorded once the palms are gone
        assert templates() == 0 and deleted_by() == ["system:retention"]
    threads = [t.name for t in threading.enumerate()]
    assert "retention-sweep" not in threads  # stopped at shutdown


@pytest.mark.postgres
def test_one_process_sweeps_at_a_time_on_postgres(postgres_url: str) -> None:
    engine, other = make_engine(postgres_url), make_engine(postgres_url)
    try:
        assert exclusive(engine, lambda: "swept") == "swept"
        with other.connect() as holder:  # another worker is sweeping
            assert holder.scalar(sa.select(sa.func.pg_try_advisory_lock(SWEEP_LOCK_KEY)))
            assert exclusive(engine, lambda: "swept") is None
            holder.scalar(sa.select(sa.func.pg_advisory_unlock(SWEEP_LOCK_KEY)))
        assert exclusive(engine, lambda: "swept") == "swept"  # released after each run
        with pytest.raises(RuntimeError):
            exclusive(engine, _boom)
        assert exclusive(engine, lambda: "again") == "again"  # released after a failure too
    finally:
        engine.dispose()
        other.dispose()


def _boom() -> None:
    raise RuntimeError("sweep failed")
