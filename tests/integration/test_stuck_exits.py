"""Every exit ends without the gate sending it again: a session left ``exited`` by a crash
or by a processor that could not answer is finished by the server (at start-up, by the
periodic run, by ``storefront payments reconcile``), charged at most once."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clocks import FakeClock

from storefront.api.app import _stuck_exit_runs
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.errors import PaymentError
from storefront.payments import SimulatedProcessor
from storefront.payments.base import ProcessorTimeout
from storefront.payments.stuck_exits import finish_stuck_exits, stuck_exits
from storefront.settings import Settings

ITEM = builtin_items()[0]


class LostCaptureAnswers(SimulatedProcessor):
    """Captures land at the processor but, while ``lose`` is set, their answer is lost
    (a timeout after success) and look-ups time out, as when the network or the service
    dies mid-call."""

    lose = True

    def capture(self, **kwargs: Any) -> Any:
        done = super().capture(**kwargs)
        if self.lose:
            raise ProcessorTimeout("the answer was lost")
        return done

    def lookup(self, **kwargs: Any) -> Any:
        if self.lose:  # nor can it be asked about, until it is back
            raise ProcessorTimeout("the processor does not answer")
        return super().lookup(**kwargs)


@pytest.fixture
def processor() -> LostCaptureAnswers:
    return LostCaptureAnswers(seed=6, decline_rate=0.0)


def _start(tmp_path: Path, processor: SimulatedProcessor, clock: FakeClock,
           **settings: Any) -> Container:
    c = bootstrap(Settings(data_dir=tmp_path / "store", entry_hold_minor=2000, **settings),
                  processor=processor, clock=clock)
    c.catalogue.upsert(builtin_items())
    return c


def _stuck_exit(c: Container, clock: FakeClock, seq: int = 1) -> str:
    shopper = c.shoppers.register(display_name="Kim", payment_token="tok_kim").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.ingest.record(session_id=sid, kind="picked", product_code=ITEM.code, quantity=2,
                    device_id="cart-1", device_seq=seq, sensor_time=clock.now)
    with pytest.raises(PaymentError):
        c.checkout.exit(sid)
    assert c.read_model.get(sid).status == "exited"
    return sid


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _served(c: Container) -> None:
    """What ``storefront serve`` runs once it has started: the first stuck-exit run, on
    its background thread."""
    task = _stuck_exit_runs(c)
    deadline = time.monotonic() + 30
    while task.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    task.stop()
    assert task.runs >= 1 and task.failures == 0


def test_a_restart_of_the_only_process_finishes_the_exit(
        tmp_path: Path, processor: LostCaptureAnswers, clock: FakeClock) -> None:
    first = _start(tmp_path, processor, clock, payment_reconcile_after_s=0)
    sid = _stuck_exit(first, clock)
    first.close()
    processor.lose = False
    again = _start(tmp_path, processor, clock, payment_reconcile_after_s=0)
    try:
        assert again.read_model.get(sid).status == "exited"  # start-up does not wait on it
        _served(again)
        view = again.read_model.get(sid)
        assert view.status == "settled" and view.total_minor == 2 * ITEM.unit_price_minor
        assert processor.captured_total() == 2 * ITEM.unit_price_minor  # once
    finally:
        again.close()


def test_a_dead_process_lease_is_taken_over_at_start_up(
        tmp_path: Path, processor: LostCaptureAnswers, clock: FakeClock) -> None:
    first = _start(tmp_path, processor, clock, payment_reconcile_after_s=0)
    sid = _stuck_exit(first, clock)
    assert first.read_model.claim_exit(sid, "dead-process", clock.now, timedelta(minutes=5))
    first.close()  # it died holding the exit lease
    processor.lose = False
    clock.now += timedelta(seconds=1)
    again = _start(tmp_path, processor, clock, payment_reconcile_after_s=0)
    try:
        _served(again)
        assert again.read_model.get(sid).status == "settled"
    finally:
        again.close()


def test_the_periodic_run_waits_for_the_delay_and_for_live_leases(
        tmp_path: Path, processor: LostCaptureAnswers, clock: FakeClock) -> None:
    c = _start(tmp_path, processor, clock)
    try:
        sid = _stuck_exit(c, clock)
        processor.lose = False

        def run() -> Any:
            return finish_stuck_exits(checkout=c.checkout, db=c.db, store_id="store-1",
                                      clock=clock, older_than=timedelta(seconds=60),
                                      lease=timedelta(seconds=150))

        assert run().found == 0  # exited just now: a gate may still be retrying
        clock.now += timedelta(seconds=61)
        assert c.read_model.claim_exit(sid, "live", clock.now, timedelta(seconds=150))
        assert run().found == 0  # a live exit holds the lease
        c.read_model.release_exit(sid, "live")
        done = run()
        assert (done.found, done.settled, done.sessions) == (1, 1, {sid: "settled"})
        assert c.read_model.get(sid).status == "settled"
        assert processor.captured_total() == 2 * ITEM.unit_price_minor
        assert stuck_exits(c.db, store_id="store-1", clock=clock,
                           older_than=timedelta(0), lease=timedelta(seconds=150)) == []
    finally:
        c.close()


def test_a_processor_still_down_leaves_it_for_the_next_run(
        tmp_path: Path, processor: LostCaptureAnswers, clock: FakeClock) -> None:
    c = _start(tmp_path, processor, clock)
    try:
        sid = _stuck_exit(c, clock)
        clock.now += timedelta(minutes=2)
        done = finish_stuck_exits(checkout=c.checkout, db=c.db, store_id="store-1",
                                  clock=clock, older_than=timedelta(seconds=60),
                                  lease=timedelta(seconds=150))
        assert (done.found, done.still_pending) == (1, 1)
        assert c.read_model.get(sid).status == "exited"
        processor.lose = False
        clock.now += timedelta(minutes=2)
        done = finish_stuck_exits(checkout=c.checkout, db=c.db, store_id="store-1",
                                  clock=clock, older_than=timedelta(seconds=60),
                                  lease=timedelta(seconds=150))
        assert done.settled == 1 and processor.captured_total() == 2 * ITEM.unit_price_minor
    finally:
        c.close()


def test_one_broken_session_does_not_stop_the_others(
        tmp_path: Path, processor: LostCaptureAnswers, clock: FakeClock) -> None:
    import sqlalchemy as sa

    c = _start(tmp_path, processor, clock)
    try:
        broken = _stuck_exit(c, clock)
        clock.now += timedelta(seconds=1)
        fine = _stuck_exit(c, clock, seq=2)
        with c.db.begin() as db:  # its event log lost (a bad restore): the exit cannot run
            db.execute(sa.text("DELETE FROM cart_events WHERE session_id = :s"), {"s": broken})
        processor.lose = False
        clock.now += timedelta(minutes=2)
        done = finish_stuck_exits(checkout=c.checkout, db=c.db, store_id="store-1",
                                  clock=clock, older_than=timedelta(seconds=60),
                                  lease=timedelta(seconds=150))
        assert done.sessions == {broken: "failed", fine: "settled"}
    finally:
        c.close()
