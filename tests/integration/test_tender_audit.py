"""The audit log records the staffed checkout's money, on SQLite and PostgreSQL: a tender
taken by staff (``tender``: cash with its change, card approved, declined or pending), a
pending card tender decided later (``tender_settled``: by a cashier's resend or by
reconciliation) and a late hold voided by reconciliation (``hold_released``). A replay
or a run that decided nothing writes nothing, the entries never carry card data, and the
hash chain stays intact. Money is integer minor units."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from storefront.bootstrap import Container
from storefront.security.audit import AuditRecord
from tests.integration.test_staffed_reconcile import (  # noqa: F401 - fixture
    LATER,
    _crash,
    _race_resend_with_reconcile,
    _reconcile,
    _tender,
    _together,
    shop,
)
from tests.integration.test_staffed_review_fixes import (
    _card,
    _cash,
    _declined,
    _staffed,
)

MONEY = ("tender", "tender_settled", "hold_released")
CARD_ON_FILE = "tok_noa"  # the token ``_staffed`` registers the shopper with


def _money(c: Container, sid: str) -> list[AuditRecord]:
    """The session's audit entries about money, oldest first."""
    return [e for e in c.audit.entries(subject=f"session:{sid}", limit=1000)
            if e.action in MONEY]


def _assert_no_card_data(c: Container, *tokens: str) -> None:
    """No audit entry holds a card token, its SHA-256 or a token field at all."""
    text = json.dumps([e.details for e in c.audit.entries(limit=10_000)])
    for token in tokens:
        assert token not in text
        assert hashlib.sha256(token.encode()).hexdigest() not in text
    assert "token" not in text


def test_a_cash_tender_is_audited_once_with_the_amounts_and_the_change(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, _ = shop
    sid = _staffed(c, clock)  # 2 x TEA at 3.00 = 6.00 GBP
    drawer = c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=5000).drawer_id
    tender, balance = c.staffed.take_tender(**_cash(sid, "c1", 1000))
    assert (tender.state, tender.change_minor, balance) == ("taken", 400, 0)
    [entry] = _money(c, sid)
    assert (entry.actor, entry.action, entry.subject) == ("staff:ann", "tender",
                                                          f"session:{sid}")
    assert entry.details == {"tender_id": tender.id, "method": "cash", "amount_minor": 600,
                             "currency": "GBP", "till_id": "t1", "drawer_id": drawer,
                             "tendered_minor": 1000, "change_minor": 400,
                             "outcome": "approved", "state": "taken"}
    assert c.staffed.take_tender(**_cash(sid, "c1", 1000))[0].id == tender.id  # a replay
    assert c.staffed.close(session_id=sid, staff_id="ann").change_minor == 400
    assert c.staffed.take_tender(**_cash(sid, "c1", 1000))[0].id == tender.id  # after close
    assert [e.seq for e in _money(c, sid)] == [entry.seq]
    assert c.audit.verify().ok


def test_card_tenders_approved_and_declined_are_audited_without_card_data(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = _staffed(c, clock)
    real = processor.inner.authorize
    processor.inner.authorize = lambda **kw: _declined(kw)
    declined, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.inner.authorize = real
    card = "tok_visa_4242"
    approved, balance = c.staffed.take_tender(**_card(sid, "k2", 600), payment_token=card)
    assert (declined.state, approved.state, balance) == ("declined", "captured", 0)
    first, second = _money(c, sid)
    assert (first.actor, first.action, second.actor, second.action) == (
        "staff:ann", "tender", "staff:ann", "tender")
    assert first.details == {"tender_id": declined.id, "method": "card", "amount_minor": 600,
                             "currency": "GBP", "till_id": "t1",
                             "authorization_id": "auth_declined", "outcome": "declined",
                             "state": "declined"}
    row = _tender_by_id(c, sid, approved.id)
    assert second.details == {"tender_id": approved.id, "method": "card", "amount_minor": 600,
                              "currency": "GBP", "till_id": "t1",
                              "authorization_id": row.authorization_id,
                              "capture_id": approved.capture_id, "outcome": "approved",
                              "state": "captured"}
    assert row.authorization_id and approved.capture_id
    # Replays of both (with and without the card) write nothing.
    c.staffed.take_tender(**_card(sid, "k1", 600))
    c.staffed.take_tender(**_card(sid, "k2", 600), payment_token=card)
    c.staffed.take_tender(**_card(sid, "k2", 600))
    assert [e.seq for e in _money(c, sid)] == [first.seq, second.seq]
    _assert_no_card_data(c, card, CARD_ON_FILE)
    assert c.audit.verify().ok


def test_a_pending_tender_finished_by_a_resend_is_audited_as_settled_by_the_cashier(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = _staffed(c, clock)
    processor.lose_captures, processor.lookups_down = 99, True  # outcome unknown
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert tender.state == "authorized"
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "authorized"  # still
    [taken] = _money(c, sid)
    assert (taken.action, taken.details["outcome"], taken.details["state"]) == (
        "tender", "pending", "authorized")
    assert "capture_id" not in taken.details
    processor.lose_captures, processor.lookups_down = 0, False
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "captured"
    c.staffed.take_tender(**_card(sid, "k1", 600))  # a replay of the finished tender
    taken_again, settled = _money(c, sid)
    assert taken_again.seq == taken.seq
    assert (settled.actor, settled.action) == ("staff:ann", "tender_settled")
    assert {k: settled.details[k] for k in ("tender_id", "outcome", "state", "amount_minor",
                                            "captured_minor")} == (
        {"tender_id": tender.id, "outcome": "captured", "state": "captured",
         "amount_minor": 600, "captured_minor": 600})
    assert settled.details["capture_id"] == _tender(c, sid).capture_id
    _assert_no_card_data(c, CARD_ON_FILE)
    assert c.audit.verify().ok


def test_reconcile_audits_the_tenders_it_settles_once(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    paid = _crash(c, clock, processor, "after")  # the hold was placed, then the crash
    unpaid = _crash(c, clock, processor, "before", device_seq=2)  # no hold
    outcomes = sorted(t.outcome for t in _reconcile(c, clock).tenders)
    assert outcomes == ["no_money", "paid"]
    [captured] = _money(c, paid)  # the crashed request itself wrote no entry
    [failed] = _money(c, unpaid)
    assert (captured.actor, captured.action, failed.actor, failed.action) == (
        "reconcile", "tender_settled", "reconcile", "tender_settled")
    row = _tender(c, paid)
    assert captured.details == {"tender_id": row.id, "method": "card", "amount_minor": 600,
                                "currency": "GBP", "till_id": "t1",
                                "authorization_id": row.authorization_id,
                                "capture_id": row.capture_id, "outcome": "captured",
                                "state": "captured", "captured_minor": 600,
                                "state_before": "authorizing"}
    assert {k: failed.details[k] for k in ("tender_id", "outcome", "state", "state_before",
                                           "captured_minor")} == (
        {"tender_id": _tender(c, unpaid).id, "outcome": "failed", "state": "failed",
         "state_before": "authorizing", "captured_minor": 0})
    clock.now += LATER
    assert _reconcile(c, clock).tenders == []  # nothing pending: no new entry
    assert [e.seq for e in _money(c, paid) + _money(c, unpaid)] == [captured.seq, failed.seq]
    _assert_no_card_data(c, CARD_ON_FILE)
    assert c.audit.verify().ok


def late_hold_after_failed_tender(c: Any, clock: Any, processor: Any) -> str:
    """A staffed session whose card tender (k1, 600) reconciliation recorded failed while the
    cashier's resend was authorizing, the resend's hold placed but its answer lost; the
    processor is up again. Returns the session id."""
    sid = _crash(c, clock, processor, "before")

    def reconciler() -> None:  # runs while the cashier's resend is authorizing
        clock.now += LATER
        _reconcile(c, clock)  # finds no hold yet: records the tender failed
        processor.down = True  # the resend's hold is placed, its answer lost
    processor.before_authorize = reconciler
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "failed"
    processor.down = False
    return sid


def test_a_late_hold_voided_by_reconcile_is_audited_once(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = late_hold_after_failed_tender(c, clock, processor)
    [failed] = _money(c, sid)  # the resend wrote nothing: reconciliation decided
    assert (failed.actor, failed.action, failed.details["outcome"]) == (
        "reconcile", "tender_settled", "failed")
    [hold] = [h for h in processor.inner.holds() if not h["voided"]]
    clock.now += LATER
    assert _reconcile(c, clock).tenders_late_holds_released == 1
    assert processor.open_holds() == []
    clock.now += LATER
    assert _reconcile(c, clock).tenders_late_holds_released == 0
    failed_again, released = _money(c, sid)
    assert failed_again.seq == failed.seq
    assert (released.actor, released.action) == ("reconcile", "hold_released")
    assert {k: released.details[k] for k in ("tender_id", "authorization_id",
                                             "released_minor", "currency")} == (
        {"tender_id": _tender(c, sid).id, "authorization_id": hold["id"],
         "released_minor": 600, "currency": "GBP"})
    _assert_no_card_data(c, CARD_ON_FILE)
    assert c.audit.verify().ok


def test_two_reconcile_runs_at_once_record_one_settlement(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "after")
    first, second = _together(lambda i: ",".join(t.outcome
                                                 for t in _reconcile(c, clock).tenders))
    assert sorted([first, second]) in (["", "paid"], ["busy", "paid"]), (first, second)
    assert [(e.actor, e.action) for e in _money(c, sid)] == [("reconcile", "tender_settled")]
    assert processor.captured() == 600
    assert c.audit.verify().ok


@pytest.mark.parametrize("when", ["before", "after"])
def test_reconcile_racing_a_resend_audits_the_one_outcome_once(
        shop: Any, when: str) -> None:  # noqa: F811 - the imported fixture
    """Whoever writes the outcome (the cashier's resend or reconciliation) records it, and
    only they: the captured amounts in the audit add up to what the processor captured."""
    c, _, processor = shop
    for round_ in range(3):
        sid, before, reconciled, resent, row = _race_resend_with_reconcile(shop, when, round_)
        assert row.state in ("captured", "failed"), (reconciled, resent, row.state)
        settled = [e for e in _money(c, sid) if e.action == "tender_settled"]
        assert len(settled) == 1, (reconciled, resent, settled)
        assert settled[0].actor in ("reconcile", "staff:ann")
        assert settled[0].details["state"] == row.state
        assert settled[0].details["captured_minor"] == processor.captured() - before
        # A resend's hold that lands after reconciliation failed the tender is voided
        # (by the resend, and by the run's late-hold release, which records it).
        rest = [e for e in _money(c, sid) if e.action != "tender_settled"]
        assert [e.action for e in rest] in ([], ["hold_released"]), rest
        for released in rest:
            [hold] = [h for h in processor.inner.holds()
                      if h["id"] == released.details["authorization_id"]]
            assert (row.state, hold["voided"], hold["captured_minor"]) == ("failed", True,
                                                                           None)
            assert released.actor == "reconcile"
    assert c.audit.verify().ok


def _tender_by_id(c: Container, sid: str, tender_id: str) -> Any:
    from storefront.db.models import Tender
    with c.db() as db:
        row = db.get(Tender, tender_id)
    assert row is not None and row.session_id == sid
    return row
