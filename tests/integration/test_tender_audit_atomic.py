"""Money taken at the staffed checkout is never stored without its audit entry, on SQLite
and PostgreSQL: the audit write is made to fail (a database error, or the process dying
in the middle of it) and afterwards every stored tender outcome has its entry exactly
once. A cash tender whose entry failed is not stored at all and is taken, audited, when
sent again; a card tender whose outcome's entry failed stays pending and is finished,
audited, by a resend or by reconciliation; a reconciliation run or a late-hold release
whose entry failed leaves its write undone for the next run. Money is integer minor
units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from tests.integration.audit_faults import FAILURES, audit_write_fails, raised
from tests.integration.test_staffed_reconcile import (  # noqa: F401 - fixture
    LATER,
    Paused,
    _crash,
    _reconcile,
    _tender,
    shop,
)
from tests.integration.test_staffed_review_fixes import Clock, _card, _cash, _staffed
from tests.integration.test_tender_audit import _money, late_hold_after_failed_tender


@pytest.fixture
def declining(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock]]:
    """A container on SQLite and on PostgreSQL whose processor declines every card."""
    clock = Clock()
    processor = Paused(SimulatedProcessor(seed=11, decline_rate=1.0))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                          processor=processor, clock=clock)
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    yield container, clock
    container.close()


@pytest.mark.parametrize("how", FAILURES)
def test_a_cash_tender_whose_audit_write_fails_is_not_stored_and_is_taken_when_resent(
        shop: Any, how: str) -> None:  # noqa: F811 - the imported fixture
    c, clock, _ = shop
    sid = _staffed(c, clock)  # 2 x TEA at 3.00 = 6.00 GBP
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=5000)
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        c.staffed.take_tender(**_cash(sid, "c1", 1000))
    assert failed  # the audit write was reached and failed
    # Neither the tender nor its entry: the request failed cleanly.
    assert c.till.tenders(sid) == [] and _money(c, sid) == []
    assert c.till.x_report(till_id="t1").cash_sales_minor == 0
    assert c.staffed.cart(sid).frozen is False  # the freeze rolled back with it
    tender, balance = c.staffed.take_tender(**_cash(sid, "c1", 1000))  # sent again
    assert (tender.state, tender.change_minor, balance) == ("taken", 400, 0)
    assert c.staffed.take_tender(**_cash(sid, "c1", 1000))[0].id == tender.id  # a replay
    [stored] = c.till.tenders(sid)
    [entry] = _money(c, sid)
    assert (stored.id, entry.action, entry.actor) == (tender.id, "tender", "staff:ann")
    assert (entry.details["tender_id"], entry.details["outcome"]) == (tender.id, "approved")
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600
    assert c.audit.verify().ok


@pytest.mark.parametrize("finisher", ["resend", "reconcile"])
@pytest.mark.parametrize("how", FAILURES)
def test_a_captured_card_tender_whose_audit_write_fails_stays_pending_until_audited(
        shop: Any, how: str, finisher: str) -> None:  # noqa: F811 - the imported fixture
    """The capture went through at the processor but its write and entry did not: the
    tender stays pending (``authorized``), never ``captured`` without an entry, and
    whoever finishes it records the capture with its entry, once, without charging
    again."""
    c, clock, processor = shop
    sid = _staffed(c, clock)
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        c.staffed.take_tender(**_card(sid, "k1", 600))
    assert failed and processor.captured() == 600  # money taken at the processor
    assert _tender(c, sid).state == "authorized" and _money(c, sid) == []
    if finisher == "resend":
        tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
        assert (tender.state, balance) == ("captured", 0)
        actor = "staff:ann"
    else:
        clock.now += LATER
        assert [t.outcome for t in _reconcile(c, clock).tenders] == ["paid"]
        actor = "reconcile"
    c.staffed.take_tender(**_card(sid, "k1", 600))  # a replay of the finished tender
    clock.now += LATER
    assert _reconcile(c, clock).tenders == []  # nothing left pending
    row = _tender(c, sid)
    [entry] = _money(c, sid)
    assert (row.state, entry.action, entry.actor) == ("captured", "tender_settled", actor)
    assert {k: entry.details[k] for k in ("tender_id", "outcome", "captured_minor",
                                          "capture_id")} == (
        {"tender_id": row.id, "outcome": "captured", "captured_minor": 600,
         "capture_id": row.capture_id})
    assert processor.captured() == 600 and len(processor.inner.holds()) == 1
    assert c.staffed.close(session_id=sid, staff_id="ann").paid_minor == 600
    assert c.audit.verify().ok


@pytest.mark.parametrize("how", FAILURES)
def test_a_declined_card_tender_whose_audit_write_fails_is_audited_when_resent(
        declining: Any, how: str) -> None:
    """A decline takes no money, but its entry is owed all the same: the tender stays
    pending until a resend finds the decline and records it with its entry."""
    c, clock = declining
    sid = _staffed(c, clock)
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        c.staffed.take_tender(**_card(sid, "k1", 600))
    assert failed
    assert _tender(c, sid).state == "authorizing" and _money(c, sid) == []
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    c.staffed.take_tender(**_card(sid, "k1", 600))  # a replay
    [entry] = _money(c, sid)
    assert (tender.state, entry.action, entry.details["outcome"]) == (
        "declined", "tender_settled", "failed")
    assert c.audit.verify().ok


@pytest.mark.parametrize("how", FAILURES)
def test_a_settlement_by_reconcile_whose_audit_write_fails_is_redone_by_the_next_run(
        shop: Any, how: str) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "after")  # the hold was placed, then the crash
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _reconcile(c, clock)
    assert failed and processor.captured() == 600
    assert _tender(c, sid).state == "authorized" and _money(c, sid) == []
    clock.now += LATER
    assert [t.outcome for t in _reconcile(c, clock).tenders] == ["paid"]
    clock.now += LATER
    assert _reconcile(c, clock).tenders == []
    [entry] = _money(c, sid)
    assert (entry.actor, entry.action, entry.details["captured_minor"]) == (
        "reconcile", "tender_settled", 600)
    assert _tender(c, sid).state == "captured" and processor.captured() == 600
    assert c.audit.verify().ok


@pytest.mark.parametrize("how", FAILURES)
def test_a_late_hold_release_whose_audit_write_fails_is_recorded_by_the_next_run(
        shop: Any, how: str) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = late_hold_after_failed_tender(c, clock, processor)
    [failed_entry] = _money(c, sid)
    clock.now += LATER
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _reconcile(c, clock)
    assert failed and processor.open_holds() == []  # voided at the processor
    reason = _tender(c, sid).failure_reason or ""
    assert "no record" in reason and "was released" not in reason  # the note rolled back
    assert _money(c, sid) == [failed_entry]
    clock.now += LATER
    assert _reconcile(c, clock).tenders_late_holds_released == 1
    clock.now += LATER
    assert _reconcile(c, clock).tenders_late_holds_released == 0
    entries = _money(c, sid)
    assert [e.action for e in entries] == ["tender_settled", "hold_released"]
    assert entries[1].details["released_minor"] == 600
    assert "was released" in (_tender(c, sid).failure_reason or "")
    assert c.audit.verify().ok
