"""`storefront payments reconcile` settles staffed card tenders left pending, on SQLite and
PostgreSQL: a crash or a timeout in mid-call leaves a card tender ``authorizing`` or
``authorized``; reconciliation looks the call up under the tender's key and records the
tender paid when the processor has the money, failed when it has no record (never sending
an authorization), and a cashier sending the tender again at the same time ends with one
recorded outcome and one capture at most. Money is integer minor units."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.cli import app
from storefront.db.models import Tender
from storefront.payments import SimulatedProcessor
from storefront.payments.reconcile import ReconcileReport, reconcile
from storefront.settings import Settings
from storefront.till import TenderResolution
from tests.integration.test_staffed_review_fixes import (
    Clock,
    Crash,
    Faulty,
    _card,
    _cash,
    _staffed,
)

AFTER = timedelta(seconds=60)
"""Reconciliation's ``older_than`` in these tests (the claim lasts 10 minutes)."""
LATER = timedelta(minutes=2)
"""How long after the crash reconciliation runs: past ``AFTER``."""


class Paused(Faulty):
    """``Faulty`` with a hook run (once) before an authorization takes effect and one run
    (once) before a look-up is answered: another request is slipped in there."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        super().__init__(inner)
        self.before_authorize: Callable[[], None] | None = None
        self.before_lookup: Callable[[], None] | None = None
        self.authorize_calls = 0

    def authorize(self, **kw: Any) -> Any:
        self.authorize_calls += 1
        hook, self.before_authorize = self.before_authorize, None
        if hook is not None:
            hook()
        return super().authorize(**kw)

    def lookup(self, **kw: Any) -> Any:
        hook, self.before_lookup = self.before_lookup, None
        if hook is not None:
            hook()
        return super().lookup(**kw)


@pytest.fixture
def shop(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Paused]]:
    """A container on SQLite and on PostgreSQL with a processor that loses answers."""
    clock = Clock()
    processor = Paused(SimulatedProcessor(seed=11, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                          processor=processor, clock=clock)
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    yield container, clock, processor
    container.close()


def _reconcile(c: Container, clock: Clock) -> ReconcileReport:
    return reconcile(payment=c.checkout.payment, read_model=c.read_model, clock=clock,
                     older_than=AFTER, lease=timedelta(seconds=30), till=c.till)


def _tender(c: Container, sid: str) -> Tender:
    with c.db() as db:
        return db.scalars(sa.select(Tender).where(Tender.session_id == sid)
                          .order_by(Tender.created_at, Tender.id)).first()  # type: ignore[return-value]


def _crash(c: Container, clock: Clock, processor: Paused, when: str,
           device_seq: int = 1) -> str:
    """A staffed sale of 6.00 GBP whose card tender k1 died in mid-authorize (``before``:
    no hold; ``after``: the hold is placed); the clock then moves past ``AFTER``."""
    sid = _staffed(c, clock, device_seq=device_seq)
    processor.crash_authorize = when
    with pytest.raises(Crash):
        c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.crash_authorize = None
    assert _tender(c, sid).state == "authorizing"
    clock.now += LATER
    return sid


def _together(fn: Callable[[int], str]) -> tuple[str, str]:
    """``fn(0)`` and ``fn(1)`` in two threads released together: their results in that
    order, or the name and message of the exception each raised."""
    barrier, out = threading.Barrier(2), ["", ""]

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            out[i] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out[0], out[1]


def _one(report: ReconcileReport) -> TenderResolution:
    assert len(report.tenders) == 1, report
    return report.tenders[0]


# --- money taken ----------------------------------------------------------------------


def test_a_hold_placed_before_a_crash_is_captured_and_counts_toward_the_sale(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "after")
    report = _reconcile(c, clock)
    done = _one(report)
    assert (done.outcome, done.state_before, done.state, done.amount_minor, done.key) == (
        "paid", "authorizing", "captured", 600, "k1")
    assert (report.tenders_looked_up, report.tenders_paid, report.tenders_no_money) == (1, 1, 0)
    assert processor.authorize_calls == 1  # reconciliation never sent an authorization
    assert len(processor.inner.holds()) == 1 and processor.captured() == 600
    cart = c.staffed.cart(sid)
    assert (cart.paid_minor, cart.balance_due_minor, cart.blockers) == (600, 0, ())
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.total_minor, closed.paid_minor) == (600, 600)
    assert processor.open_holds() == []
    assert _reconcile(c, clock).tenders == []  # nothing left pending


def test_a_capture_whose_answer_was_lost_is_found_and_recorded_once(shop: Any) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    processor.lose_captures, processor.lookups_down = 99, True  # timeouts: outcome unknown
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert tender.state == "authorized" and processor.captured() == 600
    processor.lose_captures, processor.lookups_down = 0, False
    clock.now += LATER
    done = _one(_reconcile(c, clock))
    assert (done.outcome, done.state_before, done.state) == ("paid", "authorized", "captured")
    assert processor.captured() == 600 and len(processor.inner.holds()) == 1
    assert _tender(c, sid).capture_id is not None
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600


def test_an_authorization_timed_out_with_the_processor_down_is_settled_later(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    processor.down = True  # the hold is placed, its answer and every look-up are lost
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "authorizing"
    clock.now += LATER
    still = _reconcile(c, clock)  # the processor cannot say yet: nothing is decided
    assert (_one(still).outcome, still.tenders_still_pending) == ("still_pending", 1)
    assert _tender(c, sid).state == "authorizing" and processor.captured() == 0
    processor.down = False
    assert _reconcile(c, clock).tenders == []  # stamped by the last run: not yet due again
    clock.now += LATER
    assert _one(_reconcile(c, clock)).outcome == "paid"
    assert processor.captured() == 600 and processor.authorize_calls == 1
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600


# --- no money taken -------------------------------------------------------------------


def test_a_tender_the_processor_has_no_record_of_is_failed_and_another_is_taken(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "before")
    report = _reconcile(c, clock)
    done = _one(report)
    assert (done.outcome, done.state, report.tenders_no_money) == ("no_money", "failed", 1)
    assert "no record" in (done.reason or "")
    assert processor.authorize_calls == 1 and processor.inner.holds() == []
    row = _tender(c, sid)
    assert (row.state, row.payment_token) == ("failed", None)  # the clear token is gone
    cart = c.staffed.cart(sid)
    assert (cart.paid_minor, cart.balance_due_minor) == (0, 600)
    assert not any("pending" in b for b in cart.blockers)
    # The sale takes another tender; a resend of the failed one changes nothing.
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "failed"
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    assert c.staffed.take_tender(**_cash(sid, "c1", 1000))[1] == 0
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.paid_minor, closed.change_minor, processor.captured()) == (600, 400, 0)


def test_young_pending_tenders_are_left_to_the_request_working_on_them(shop: Any) -> None:
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "before")
    clock.now -= LATER  # the crash was a moment ago
    assert _reconcile(c, clock).tenders == []
    assert _tender(c, sid).state == "authorizing"


# --- a cashier sends the tender again while reconciliation runs ------------------------


def test_a_resend_that_finishes_first_is_kept_and_reconciliation_backs_off(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "before")
    resent: list[str] = []

    def cashier() -> None:  # between reconciliation's look-up and its write
        resent.append(c.staffed.take_tender(**_card(sid, "k1", 600))[0].state)
    processor.before_lookup = cashier
    done = _one(_reconcile(c, clock))
    assert resent == ["captured"]
    assert (done.outcome, done.state) == ("busy", "captured")
    assert _tender(c, sid).state == "captured"
    assert len(processor.inner.holds()) == 1 and processor.captured() == 600
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600


def test_a_resend_whose_hold_lands_after_reconciliation_failed_it_is_voided(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "before")
    reports: list[ReconcileReport] = []

    def reconciler() -> None:  # the resend's authorization is slow: past ``AFTER``
        clock.now += LATER
        reports.append(_reconcile(c, clock))
    processor.before_authorize = reconciler
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (_one(reports[0]).outcome, tender.state, balance) == ("no_money", "failed", 600)
    holds = processor.inner.holds()
    assert len(holds) == 1 and holds[0]["voided"] and processor.open_holds() == []
    assert processor.captured() == 0
    assert c.staffed.take_tender(**_card(sid, "k2", 600))[0].state == "captured"
    assert processor.captured() == 600
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600


def _race_resend_with_reconcile(shop: Any, when: str,
                                round_: int) -> tuple[str, int, str, str, Tender]:
    """A card tender of 6.00 whose authorize call crashed ``when`` (before or after the
    processor acted); later, reconciliation and the cashier's resend run at once (the
    resend 3 x ``round_`` ms late, so rounds meet at different steps). Returns the
    session id, the processor's captured total before the race, what reconciliation
    reported, the resend's tender state and the tender row after both."""
    c, clock, processor = shop
    sid = _staffed(c, clock, device_seq=round_ + 1)
    processor.crash_authorize = when
    with pytest.raises(Crash):
        c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.crash_authorize = None
    clock.now += LATER
    before = processor.captured()

    def run(i: int) -> str:
        if i == 0:
            return ",".join(t.outcome for t in _reconcile(c, clock).tenders)
        time.sleep(round_ * 0.003)
        return str(c.staffed.take_tender(**_card(sid, "k1", 600))[0].state)
    reconciled, resent = _together(run)
    return sid, before, reconciled, resent, _tender(c, sid)


@pytest.mark.parametrize("when", ["before", "after"])
def test_reconcile_racing_a_resend_records_one_outcome_and_charges_once(
        shop: Any, when: str) -> None:
    c, _, processor = shop
    for round_ in range(4):
        sid, before, reconciled, resent, row = _race_resend_with_reconcile(shop, when, round_)
        assert row.state in ("captured", "failed"), (reconciled, resent, row.state)
        # Neither side fails, and what reconciliation reports agrees with what is recorded
        # ("": the resend had stamped the tender before reconciliation read it).
        assert reconciled in ("", "busy", {"captured": "paid", "failed": "no_money"}[row.state])
        assert resent in ("captured", "failed", "authorized"), resent  # authorized: the
        # capture reconciliation was sending had not been recorded yet
        taken = processor.captured() - before
        assert taken == (600 if row.state == "captured" else 0), (reconciled, resent)
        assert c.staffed.cart(sid).paid_minor == taken
        assert processor.open_holds() == []  # no hold behind a failed tender
        if when == "after":  # the hold was there: it is the one captured
            assert row.state == "captured"
        holds = [h for h in processor.inner.holds() if h["key"] == f"tender:{row.id}:authorize"]
        # One hold at most per tender, whoever placed or found it (none when the resend
        # found the tender already failed); a captured tender's hold is the one captured.
        assert len(holds) <= 1, holds
        if row.state == "captured":
            assert len(holds) == 1 and holds[0]["captured_minor"] == 600, holds
        if row.state == "failed":
            c.till.open_drawer(till_id=f"t-{when}-{round_}", staff_id="ann", float_minor=0)
            c.staffed.take_tender(**{**_cash(sid, "c1", 600), "till_id": f"t-{when}-{round_}"})
        assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600


# --- the command ----------------------------------------------------------------------


def test_the_command_reports_the_tenders_it_settled(tmp_path: Path, database: str | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "processor.db"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(state))
    monkeypatch.setenv("STOREFRONT_PAYMENT_DECLINE_RATE", "0")
    if database is not None:
        monkeypatch.setenv("STOREFRONT_DATABASE_URL", database)
    clock = Clock()
    processor = Paused(SimulatedProcessor(seed=11, decline_rate=0.0, state_path=state))
    c = bootstrap(Settings(), processor=processor, clock=clock)
    c.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    paid = _crash(c, clock, processor, "after")
    unpaid = _crash(c, clock, processor, "before", device_seq=2)
    ids = {_tender(c, paid).id: "paid", _tender(c, unpaid).id: "no_money"}
    c.close()
    processor.inner.close()
    result = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["tenders_looked_up"], report["tenders_paid"], report["tenders_no_money"],
            report["tenders_still_pending"], report["tenders_busy"]) == (2, 1, 1, 0, 0)
    assert {t["tender_id"]: t["outcome"] for t in report["tenders"]} == ids
    assert {t["state"] for t in report["tenders"]} == {"captured", "failed"}
    assert all(t["key"] == "k1" and t["amount_minor"] == 600 for t in report["tenders"])
    engine = sa.create_engine(Settings().resolved_database_url())
    with engine.connect() as db:
        states = dict(db.execute(sa.select(Tender.session_id, Tender.state)).all())
    engine.dispose()
    assert states == {paid: "captured", unpaid: "failed"}
    again = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "0"])
    assert again.exit_code == 0 and json.loads(again.output)["tenders"] == []
    sim = SimulatedProcessor(seed=11, decline_rate=0.0, state_path=state)
    assert sim.captured_total() == 600 and len(sim.holds()) == 1
    sim.close()
