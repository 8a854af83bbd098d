"""Orphaned ``new`` payments (a process killed after it created the payment row, before it
journaled any processor call) are closed ``abandoned`` by the stuck-exit run and by
``storefront payments reconcile``, audited, on SQLite and PostgreSQL
(:mod:`storefront.payments.orphans`).

Left alone: a younger one (a live gate may be about to hold), one whose session is still
open or ``exited`` (its exit resumes from that row: one hold, then one capture or the
staffed route), one under a live exit lease, and one with a journaled processor call (a
hold recorded ``not_applied`` may still have taken effect). Closing is idempotent, two
sweeps at once close a row once, and a gate that comes back to a closed row sends nothing.
Money is integer minor units.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from clocks import FakeClock
from typer.testing import CliRunner

from storefront.api.app import _stuck_exit_runs
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.catalog import make_item
from storefront.db.models import Payment, PaymentOperation, ShoppingSession
from storefront.errors import PaymentError
from storefront.payments import Operation, PaymentPending, SimulatedProcessor
from storefront.payments.journal import PaymentJournal
from storefront.payments.orphans import (
    ABANDONED,
    AUDIT_ACTION,
    MIN_AGE,
    OrphanReport,
    abandon,
    close_orphaned_payments,
)
from storefront.payments.reconcile import reconcile
from storefront.payments.stuck_exits import StuckExitReport, finish_stuck_exits
from storefront.privacy.export import collect
from storefront.security.audit import AuditRecord
from storefront.settings import Settings

ITEM = builtin_items()[0]
AFTER = timedelta(seconds=60)  # STOREFRONT_STUCK_EXIT_AFTER_S's default
LEASE = timedelta(seconds=150)  # STOREFRONT_EXIT_LEASE_S's default
HOLD = 2000


class Crash(BaseException):
    """The process dies (not an Exception: nothing may catch it)."""


class Recording(SimulatedProcessor):
    """Records every call that reaches the processor (label, key); ``decline`` makes the
    issuer decline every hold."""

    def __init__(self, *, decline: bool = False,
                 on_call: Callable[[str, str], None] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.extra = on_call

        def hook(label: str, key: str) -> None:
            self.calls.append((label, key))
            if self.extra is not None:
                self.extra(label, key)

        super().__init__(seed=3, decline_rate=1.0 if decline else 0.0, on_call=hook)

    def sent(self) -> list[str]:
        """Labels of the calls made (look-ups aside)."""
        return [label for label, _ in self.calls if label != "lookup"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def processor() -> Recording:
    return Recording()


def _start(tmp_path: Path, url: str | None, processor: SimulatedProcessor, clock: FakeClock,
           *, hold: int = HOLD, **settings: Any) -> Container:
    settings = {"payment_reconcile_after_s": 3600.0, **settings}
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=url,
                           entry_hold_minor=hold, exit_lease_s=LEASE.total_seconds(),
                           **settings),
                  processor=processor, clock=clock)
    c.catalogue.upsert([ITEM])
    return c


@pytest.fixture
def store(tmp_path: Path, database: str | None, processor: Recording,
          clock: FakeClock) -> Iterator[Container]:
    c = _start(tmp_path, database, processor, clock)
    yield c
    c.close()


@contextmanager
def _killed_before_the_first_call(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process dies after the payment row is written, before the journal records a
    call (so before anything is sent)."""

    def die(self: PaymentJournal, payment_id: str, step: Any) -> Any:
        raise Crash(f"killed before the {step.purpose} was journaled")

    with monkeypatch.context() as patch:
        patch.setattr(PaymentJournal, "_begin", die)
        yield


def _shopper(c: Container, name: str = "Ada") -> str:
    return c.shoppers.register(display_name=name, payment_token=f"tok_{name.lower()}").id


def _payments_of(c: Container, shopper_id: str) -> list[Payment]:
    with c.db() as db:
        return list(db.scalars(sa.select(Payment).where(Payment.shopper_id == shopper_id)
                               .order_by(Payment.created_at, Payment.id)))


def _needs_age_check(c: Container) -> None:
    """Make the test item age-restricted: an exit with it goes to the staffed checkout."""
    c.catalogue.upsert([make_item(ITEM.code, ITEM.name, ITEM.unit_price_minor, "GBP",
                                  age_restricted=True)])


def _payment(c: Container, session_id: str) -> Payment:
    with c.db() as db:
        return db.scalars(sa.select(Payment).where(Payment.session_id == session_id)).one()


def _ops(c: Container, payment_id: str) -> list[tuple[str, str]]:
    with c.db() as db:
        return [(op.purpose, op.state) for op in db.scalars(
            sa.select(PaymentOperation).where(PaymentOperation.payment_id == payment_id))]


def _orphan_at_entry(c: Container, monkeypatch: pytest.MonkeyPatch,
                     name: str = "Ada") -> tuple[str, str]:
    """A gate killed mid-entry, between the payment row and its hold; returns (shopper,
    session id the row was made for: a session that never opened)."""
    shopper = _shopper(c, name)
    with _killed_before_the_first_call(monkeypatch), pytest.raises(Crash):
        c.gates.open_session(shopper_id=shopper, entry_method="app")
    [payment] = _payments_of(c, shopper)
    assert (payment.state, _ops(c, payment.id)) == ("new", [])
    return shopper, payment.session_id


def _orphan_at_exit(c: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                    name: str = "Bo") -> str:
    """A store without entry holds: a session whose exit was killed after it created the
    payment row, before the hold was journaled; the dead process keeps its exit lease."""
    shopper = _shopper(c, name)
    sid = c.gates.open_session(shopper_id=shopper, entry_method="app")
    c.ingest.record(session_id=sid, kind="picked", product_code=ITEM.code, quantity=2,
                    device_id="cart-1", device_seq=0, sensor_time=clock.now)
    with _killed_before_the_first_call(monkeypatch), pytest.raises(Crash):
        c.checkout.exit(sid)
    assert c.read_model.claim_exit(sid, "dead-process", clock.now, LEASE)  # as it died
    assert c.read_model.get(sid).status == "exited"
    payment = _payment(c, sid)
    assert (payment.state, _ops(c, payment.id)) == ("new", [])
    return sid


def _run(c: Container, clock: FakeClock, **kw: Any) -> StuckExitReport:
    """One stuck-exit run as ``storefront serve``'s periodic one (threshold 60 s)."""
    return finish_stuck_exits(checkout=c.checkout, db=c.db, store_id=c.settings.store_id,
                              clock=clock, older_than=kw.pop("older_than", AFTER),
                              lease=LEASE, audit=c.audit, **kw)


def _sweep(c: Container, clock: FakeClock) -> OrphanReport:
    return close_orphaned_payments(c.db, store_id=c.settings.store_id, clock=clock,
                                   older_than=AFTER, lease=LEASE, audit=c.audit)


def _entries(c: Container, session_id: str) -> list[AuditRecord]:
    subject = f"payment:{_payment(c, session_id).id}"
    return [e for e in c.audit.entries(subject=subject, limit=1000)
            if e.action == AUDIT_ACTION]


def _orphans(report: StuckExitReport) -> tuple[int, int, int, int]:
    return (report.orphans_abandoned, report.orphans_busy, report.orphans_failed,
            report.orphans_with_calls)


def test_an_orphan_past_the_threshold_is_abandoned_and_audited(
        store: Container, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shopper, sid = _orphan_at_entry(store, monkeypatch)
    payment = _payment(store, sid)
    clock.now += AFTER + timedelta(seconds=1)
    report = _run(store, clock)
    assert (report.found, _orphans(report)) == (0, (1, 0, 0, 0))
    closed = _payment(store, sid)
    assert (closed.state, closed.failure_reason, closed.processor_ref) == (
        ABANDONED, None, None)
    assert closed.updated_at == clock.now and _ops(store, payment.id) == []
    [entry] = _entries(store, sid)
    assert (entry.actor, entry.action, entry.subject) == (
        "reconcile", "payment_abandoned", f"payment:{payment.id}")
    assert entry.details == {"session_id": sid, "amount_minor": HOLD,
                             "currency": "GBP", "session": "never opened",
                             "state_before": "new", "state": "abandoned", "calls": 0}
    assert processor.calls == []  # nothing was ever sent, nor is now
    # The shopper owes nothing: they enter again with a new hold and pay once.
    again = store.gates.open_session(shopper_id=shopper, entry_method="app")
    assert again != sid
    store.ingest.record(session_id=again, kind="picked", product_code=ITEM.code, quantity=1,
                        device_id="cart-1", device_seq=0, sensor_time=clock.now)
    assert store.checkout.exit(again).status == "paid"
    assert processor.captured_total() == ITEM.unit_price_minor
    assert [p.state for p in _payments_of(store, shopper)] == [ABANDONED, "captured"]


def test_the_sweep_is_idempotent(store: Container, clock: FakeClock,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER + timedelta(seconds=1)
    assert _orphans(_run(store, clock)) == (1, 0, 0, 0)
    closed = _payment(store, sid)
    seqs = [e.seq for e in store.audit.entries(limit=1000)]
    clock.now += timedelta(minutes=5)
    assert _orphans(_run(store, clock)) == (0, 0, 0, 0)
    assert _payment(store, sid).updated_at == closed.updated_at  # nothing written
    assert [e.seq for e in store.audit.entries(limit=1000)] == seqs
    assert store.audit.verify().ok


def test_a_younger_orphan_is_left_alone(store: Container, clock: FakeClock,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER - timedelta(seconds=1)  # a live gate may be about to hold it
    assert _orphans(_run(store, clock)) == (0, 0, 0, 0)
    assert _payment(store, sid).state == "new" and _entries(store, sid) == []
    clock.now += timedelta(seconds=2)
    assert _orphans(_run(store, clock)) == (1, 0, 0, 0)


def test_the_first_run_of_the_only_process_spares_rows_of_its_own(
        store: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # ``storefront serve`` alone: threshold 0, but only rows from before it started.
    _, before = _orphan_at_entry(store, monkeypatch)
    clock.now += MIN_AGE + timedelta(seconds=1)  # never younger than MIN_AGE
    started = clock.now
    _, after = _orphan_at_entry(store, monkeypatch, name="Cy")  # a request of this process
    report = _run(store, clock, older_than=timedelta(0), claimed_before=started)
    assert _orphans(report) == (1, 0, 0, 0)
    assert (_payment(store, before).state, _payment(store, after).state) == (ABANDONED, "new")


def test_a_served_process_closes_them_on_its_background_run(
        tmp_path: Path, database: str | None, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = _start(tmp_path, database, processor, clock, payment_reconcile_after_s=0)
    _, sid = _orphan_at_entry(first, monkeypatch)
    first.close()  # killed
    clock.now += MIN_AGE + timedelta(seconds=1)
    again = _start(tmp_path, database, processor, clock, payment_reconcile_after_s=0)
    try:
        assert _payment(again, sid).state == "new"  # start-up does not wait on it
        task = _stuck_exit_runs(again)
        deadline = time.monotonic() + 30
        while task.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        task.stop()
        assert task.runs >= 1 and task.failures == 0
        assert _payment(again, sid).state == ABANDONED and len(_entries(again, sid)) == 1
        assert processor.calls == []
    finally:
        again.close()


def test_an_orphan_with_a_journaled_call_is_left_for_reconcile(
        store: Container, processor: Recording, clock: FakeClock) -> None:
    # The gate died inside the hold call, before it reached the processor; reconciliation
    # found nothing and recorded it not applied: the payment is back to ``new``.
    def die(label: str, key: str) -> None:
        if label == "authorize":
            processor.extra = None
            raise Crash("killed in the hold call")

    processor.extra = die
    shopper = _shopper(store)
    with pytest.raises(Crash):
        store.gates.open_session(shopper_id=shopper, entry_method="app")
    [payment] = _payments_of(store, shopper)
    assert payment.state == "authorizing"
    clock.now += timedelta(seconds=1)
    done = reconcile(payment=store.checkout.payment, read_model=store.read_model,
                     clock=clock, older_than=timedelta(0), lease=LEASE)
    assert done.not_applied == 1
    assert (_payment(store, payment.session_id).state, _ops(store, payment.id)) == (
        "new", [("hold", "not_applied")])
    clock.now += timedelta(hours=1)
    assert _orphans(_run(store, clock)) == (0, 0, 0, 1)  # counted, not closed
    assert _payment(store, payment.session_id).state == "new"
    assert _entries(store, payment.session_id) == []
    # Why: a look-up that found nothing does not prove the call never took effect; a
    # late answer is still recorded against ``new`` (then released as a stray hold).
    [op_id] = _op_ids(store, payment.id)
    store.checkout.payment.journal.finish(
        op_id, Operation("authorize", "auth_late", "succeeded", HOLD))
    assert _payment(store, payment.session_id).state == "authorized"


def _op_ids(c: Container, payment_id: str) -> list[str]:
    with c.db() as db:
        return list(db.scalars(sa.select(PaymentOperation.id)
                               .where(PaymentOperation.payment_id == payment_id)))


def test_the_exit_of_that_session_ends_with_one_capture(
        tmp_path: Path, database: str | None, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = _start(tmp_path, database, processor, clock, hold=0)  # the hold is taken at exit
    try:
        sid = _orphan_at_exit(c, clock, monkeypatch)
        total = 2 * ITEM.unit_price_minor
        clock.now += AFTER + timedelta(seconds=1)  # past the threshold, inside the lease
        report = _run(c, clock)
        assert (report.found, _orphans(report)) == (0, (0, 0, 0, 0))  # the exit's row
        assert _payment(c, sid).state == "new" and c.read_model.get(sid).status == "exited"
        clock.now += LEASE  # the dead process's lease has run out
        report = _run(c, clock)
        assert (report.sessions, _orphans(report)) == ({sid: "settled"}, (0, 0, 0, 0))
        paid = _payment(c, sid)
        assert (paid.state, paid.captured_minor) == ("captured", total)
        assert [p.id for p in _payments_of(c, c.read_model.get(sid).shopper_id)] == [paid.id]
        assert processor.sent() == ["authorize", "capture"]  # one hold, one capture
        assert processor.captured_total() == total and _entries(c, sid) == []
        clock.now += LEASE
        report = _run(c, clock)
        assert (report.found, _orphans(report)) == (0, (0, 0, 0, 0))
        assert processor.sent() == ["authorize", "capture"]
        assert c.checkout.exit(sid).status == "paid"  # the gate's retry: the same answer
    finally:
        c.close()


def test_the_exit_of_that_session_takes_the_staffed_route_on_a_decline(
        tmp_path: Path, database: str | None, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    declining = Recording(decline=True)
    c = _start(tmp_path, database, declining, clock, hold=0)
    try:
        sid = _orphan_at_exit(c, clock, monkeypatch)
        clock.now += AFTER + LEASE
        report = _run(c, clock)
        assert (report.sessions, _orphans(report)) == ({sid: "staffed"}, (0, 0, 0, 0))
        assert _payment(c, sid).state == "declined"
        assert declining.sent() == ["authorize"] and declining.captured_total() == 0
    finally:
        c.close()


def test_an_exit_that_went_staffed_without_its_hold_is_closed_with_it(
        tmp_path: Path, database: str | None, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Killed before the hold; by the retry the item needs an age check: the exit goes to
    # staff without any payment call, and the run then closes its ``new`` payment.
    c = _start(tmp_path, database, processor, clock, hold=0)
    try:
        sid = _orphan_at_exit(c, clock, monkeypatch)
        _needs_age_check(c)
        clock.now += AFTER + LEASE
        report = _run(c, clock)
        assert (report.sessions, _orphans(report)) == ({sid: "staffed"}, (1, 0, 0, 0))
        assert _payment(c, sid).state == ABANDONED and processor.calls == []
        [entry] = _entries(c, sid)
        assert entry.details["session"] == "staffed"
        view = c.read_model.get(sid)
        assert view.status == "staffed" and (view.staffed_reason or "").startswith("age check")
        # Nothing about the payment makes the shopper owe: the same rule as before.
        assert c.checkout.payment.owed(shopper_id=view.shopper_id, now=clock.now,
                                       grace=timedelta(hours=1)) is None
    finally:
        c.close()


def test_one_under_a_live_exit_lease_is_left_alone(
        tmp_path: Path, database: str | None, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = _start(tmp_path, database, processor, clock, hold=0)
    try:
        sid = _orphan_at_exit(c, clock, monkeypatch)
        _needs_age_check(c)
        c.read_model.release_exit(sid, "dead-process")
        assert c.checkout.exit(sid).status == "staffed"  # the gate's retry
        assert _payment(c, sid).state == "new"
        with c.db.begin() as db:  # a live process holds the session's exit lease
            db.execute(sa.update(ShoppingSession).where(ShoppingSession.id == sid)
                       .values(exit_claim="live", exit_claimed_at=clock.now))
        clock.now += AFTER + timedelta(seconds=1)
        report = _sweep(c, clock)
        assert (report.abandoned, report.busy, report.payments) == (
            0, 1, {_payment(c, sid).id: "busy"})
        assert _payment(c, sid).state == "new" and _entries(c, sid) == []
        clock.now += LEASE  # that lease is now a dead process's
        assert _sweep(c, clock).abandoned == 1
        assert _payment(c, sid).state == ABANDONED and processor.calls == []
    finally:
        c.close()


def test_two_sweeps_at_once_close_each_row_once(
        store: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    sids = [_orphan_at_entry(store, monkeypatch, name=f"Shopper{i}")[1] for i in range(6)]
    clock.now += AFTER + timedelta(seconds=1)
    barrier = threading.Barrier(2)
    reports: list[OrphanReport] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(10)
            reports.append(_sweep(store, clock))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(reports) == 2
    assert sum(r.abandoned for r in reports) == 6 and sum(r.failed for r in reports) == 0
    for sid in sids:
        assert _payment(store, sid).state == ABANDONED
        assert len(_entries(store, sid)) == 1
    assert store.audit.verify().ok


def test_the_guarded_write_acts_once(store: Container, clock: FakeClock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Two sweeps that read the same row: the second's write finds it closed.
    _, sid = _orphan_at_entry(store, monkeypatch)
    payment = _payment(store, sid)
    clock.now += AFTER + timedelta(seconds=1)
    args: dict[str, Any] = {
        "payment_id": payment.id, "session_id": sid, "amount_minor": HOLD, "currency": "GBP",
        "session_status": None, "store_id": store.settings.store_id,
        "cutoff": clock.now - AFTER, "now": clock.now, "lease": LEASE}
    assert abandon(store.db, store.audit, **args) is True
    assert abandon(store.db, store.audit, **args) is False
    assert len(_entries(store, sid)) == 1


def test_a_gate_that_comes_back_to_a_closed_row_sends_nothing(
        store: Container, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A gate stalled (not dead) past the threshold between the row and the hold: the
    # sweep and its hold both compare ``new``; the sweep won, so the hold is not sent.
    shopper, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER + timedelta(seconds=1)
    assert _sweep(store, clock).abandoned == 1
    with pytest.raises(PaymentPending):
        store.checkout.payment.hold(session_id=sid, shopper_id=shopper, token="tok_ada",
                                    amount_minor=HOLD, currency="GBP")
    assert processor.calls == [] and _payment(store, sid).state == ABANDONED


def test_a_hold_that_started_first_is_never_closed(
        store: Container, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The other order: the hold is journaled (``authorizing``) while the sweep runs.
    shopper, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER + timedelta(seconds=1)
    reached, go = threading.Event(), threading.Event()

    def pause(label: str, key: str) -> None:
        if label == "authorize":
            reached.set()
            go.wait(10)

    processor.extra = pause
    outcome: list[Any] = []
    gate = threading.Thread(target=lambda: outcome.append(store.checkout.payment.hold(
        session_id=sid, shopper_id=shopper, token="tok_ada", amount_minor=HOLD,
        currency="GBP")))
    gate.start()
    assert reached.wait(10)
    report = _sweep(store, clock)
    go.set()
    gate.join(30)
    assert report.abandoned == 0 and outcome and outcome[0].captured
    assert _payment(store, sid).state == "authorized"


def test_an_exit_that_meets_a_closed_payment_goes_to_staff_uncharged(
        tmp_path: Path, database: str | None, processor: Recording, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Not reachable through the sweep (it never closes the row of a session an exit may
    # still run); if a row were closed under an exit anyway, the exit must not loop.
    c = _start(tmp_path, database, processor, clock, hold=0)
    try:
        sid = _orphan_at_exit(c, clock, monkeypatch)
        with c.db.begin() as db:
            db.execute(sa.update(Payment).where(Payment.session_id == sid)
                       .values(state=ABANDONED))
        clock.now += LEASE + timedelta(seconds=1)
        result = c.checkout.exit(sid)
        assert result.status == "staffed" and "abandoned" in (result.reason or "")
        assert processor.calls == []
    finally:
        c.close()


def test_cli_reconcile_closes_and_counts_them(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "processor.db"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(state))
    monkeypatch.setenv("STOREFRONT_ENTRY_HOLD_MINOR", str(HOLD))
    c = bootstrap(Settings(), processor=SimulatedProcessor(seed=1, decline_rate=0.0,
                                                           state_path=state))
    _, sid = _orphan_at_entry(c, monkeypatch)
    c.close()
    runner = CliRunner()
    young = runner.invoke(runner_app(), ["payments", "reconcile"])  # 60 s threshold
    assert young.exit_code == 0, young.output
    assert json.loads(young.output)["stuck_exits"]["orphans_abandoned"] == 0
    # An entry may still be under way: not even --older-than 0 closes a payment younger
    # than MIN_AGE.
    at_once = runner.invoke(runner_app(), ["payments", "reconcile", "--older-than", "0"])
    assert at_once.exit_code == 0, at_once.output
    assert json.loads(at_once.output)["stuck_exits"]["orphans_abandoned"] == 0
    aged = bootstrap(Settings())
    try:
        with aged.db.begin() as db:  # the row as a gate killed two minutes ago left it
            db.execute(sa.update(Payment).where(Payment.session_id == sid).values(
                updated_at=datetime.now(UTC) - 2 * MIN_AGE))
    finally:
        aged.close()
    result = runner.invoke(runner_app(), ["payments", "reconcile", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    stuck = json.loads(result.output)["stuck_exits"]
    assert (stuck["orphans_abandoned"], stuck["orphans_busy"], stuck["orphans_failed"],
            stuck["orphans_with_calls"]) == (1, 0, 0, 0)
    again = bootstrap(Settings())
    try:
        assert _payment(again, sid).state == ABANDONED
        [entry] = _entries(again, sid)
        assert entry.actor == "reconcile"
    finally:
        again.close()


def runner_app() -> Any:
    from storefront.cli import app

    return app


def test_a_failed_audit_write_leaves_the_row_new(
        store: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    _, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER + timedelta(seconds=1)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise PaymentError("audit log down (test)")

    with monkeypatch.context() as patch:
        patch.setattr(type(store.audit), "record_in", refuse)
        report = _sweep(store, clock)
    assert (report.abandoned, report.failed) == (0, 1)
    assert _payment(store, sid).state == "new" and _entries(store, sid) == []
    assert _sweep(store, clock).abandoned == 1  # the next run closes it, audited
    assert len(_entries(store, sid)) == 1


def test_the_shoppers_export_holds_the_payment_and_its_entry(
        store: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # The session of an entry killed mid-way never opened: the entry is found through
    # the payment (subject payment:<id>), which names the shopper.
    shopper, sid = _orphan_at_entry(store, monkeypatch)
    clock.now += AFTER + timedelta(seconds=1)
    _run(store, clock)
    payment = _payment(store, sid)
    assert payment.state == ABANDONED
    with store.db() as db:
        data = collect(db, shopper)
    assert [(p["id"], p["state"]) for p in data["payments"]] == [(payment.id, ABANDONED)]
    assert ("payment_abandoned", f"payment:{payment.id}") in [
        (a["action"], a["subject"]) for a in data["audit_log"]]
