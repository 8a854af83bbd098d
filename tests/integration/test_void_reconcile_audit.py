"""Every change reconciliation makes to a card tender left ``voiding`` is audited, on SQLite
and PostgreSQL, in the transaction that writes it (issue 6):

- a void that died before its refund was sent is put back to paid with a
  ``tender_void_undone`` entry (actor ``reconcile``: tender id, session, the states before
  and after, the amount, the dropped reason and who started the void), by the
  ``storefront payments reconcile`` run and by start-up reconciliation alike;
- a void whose refund went through is recorded ``voided`` with a ``tender_voided`` entry
  that says the states before and after;
- when the audit write fails (a database error, or the process dying in it), the
  tender stays ``voiding`` with no entry, and the next run settles it with one entry.

Money is integer minor units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storefront.bootstrap import bootstrap
from storefront.security.audit import AuditRecord
from storefront.settings import Settings
from tests.integration.audit_faults import FAILURES, audit_write_fails, raised
from tests.integration.test_staffed_reconcile import _reconcile
from tests.integration.test_staffed_void import _void
from tests.integration.test_tender_audit import CARD_ON_FILE, _assert_no_card_data
from tests.integration.test_void_reconcile import (  # noqa: F401 - the fixture
    LATER,
    _one,
    _row,
    _stuck,
    shop,
)

VOIDS = ("tender_voided", "tender_void_undone")


def _void_entries(c: Any, sid: str) -> list[AuditRecord]:
    """The session's audit entries about voids, oldest first."""
    return [e for e in c.audit.entries(subject=f"session:{sid}", limit=1000)
            if e.action in VOIDS]


def _undone_details(row: Any) -> dict[str, object]:
    """The details a ``tender_void_undone`` entry of the 6.00 GBP card tender ``row``
    (put back to paid) must carry."""
    return {"tender_id": row.id, "method": "card", "amount_minor": 600, "currency": "GBP",
            "till_id": "t1", "authorization_id": row.authorization_id,
            "capture_id": row.capture_id, "outcome": "not_voided",
            "state_before": "captured", "state": "captured",
            "void_state_before": "voiding", "void_state": None,
            "void_reason": "wrong tender", "voided_by": "ann",
            "refund_key": f"void:{row.id}"}


def test_a_void_put_back_to_paid_by_reconcile_is_audited(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=False)  # died before the refund
    assert _void_entries(c, sid) == []
    assert _one(_reconcile(c, clock)).outcome == "not_voided"
    row = _row(c, tender_id)
    assert (row.state, row.void_state) == ("captured", None)
    [entry] = _void_entries(c, sid)
    assert (entry.actor, entry.action, entry.subject) == (
        "reconcile", "tender_void_undone", f"session:{sid}")
    assert entry.details == _undone_details(row)
    clock.now += LATER
    assert _reconcile(c, clock).voids == []  # settled once: no second entry
    assert [e.seq for e in _void_entries(c, sid)] == [entry.seq]
    # Voided again by staff: refunded once, its entry says where it came from.
    c.staffed.void_tender(**_void(sid, tender_id, reason="wrong tender, again"))
    undone, voided = _void_entries(c, sid)
    assert (voided.actor, voided.action, processor.refunded()) == (
        "staff:ann", "tender_voided", [600])
    assert {k: voided.details[k] for k in ("state_before", "void_state_before", "state",
                                           "void_state", "voided_minor")} == {
        "state_before": "captured", "void_state_before": "voiding", "state": "voided",
        "void_state": "voided", "voided_minor": 600}
    _assert_no_card_data(c, CARD_ON_FILE)
    assert c.audit.verify().ok


def test_a_void_found_refunded_by_reconcile_records_the_states(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=True)  # refunded, answer lost
    assert _one(_reconcile(c, clock)).outcome == "voided"
    row = _row(c, tender_id)
    [entry] = _void_entries(c, sid)
    assert (entry.actor, entry.action, entry.subject) == (
        "reconcile", "tender_voided", f"session:{sid}")
    assert entry.details == {
        "tender_id": tender_id, "method": "card", "amount_minor": 600, "currency": "GBP",
        "till_id": "t1", "authorization_id": row.authorization_id,
        "capture_id": row.capture_id, "reason": "wrong tender", "voided_minor": 600,
        "refund_id": row.void_refund_id, "state_before": "captured",
        "void_state_before": "voiding", "state": "voided", "void_state": "voided"}
    assert row.void_refund_id and processor.refunded() == [600]
    _assert_no_card_data(c, CARD_ON_FILE)
    assert c.audit.verify().ok


@pytest.mark.parametrize("refunded", [False, True], ids=["undone", "voided"])
@pytest.mark.parametrize("how", FAILURES)
def test_a_void_settlement_whose_audit_write_fails_is_redone_by_the_next_run(
        shop: Any, how: str, refunded: bool) -> None:  # noqa: F811 - the imported fixture
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=refunded)
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _reconcile(c, clock)
    assert failed  # the audit write was reached and failed
    row = _row(c, tender_id)
    # The state change rolled back with its entry: still voiding, still paid.
    assert (row.state, row.void_state, row.void_reason) == ("captured", "voiding",
                                                             "wrong tender")
    assert _void_entries(c, sid) == [] and c.staffed.cart(sid).paid_minor == 600
    clock.now += LATER  # the failed run stamped the tender: the next run waits its turn
    outcome = _one(_reconcile(c, clock)).outcome
    assert outcome == ("voided" if refunded else "not_voided")
    [entry] = _void_entries(c, sid)
    assert (entry.actor, entry.action) == (
        "reconcile", "tender_voided" if refunded else "tender_void_undone")
    assert (entry.details["tender_id"], entry.details["amount_minor"],
            entry.details["void_state_before"]) == (tender_id, 600, "voiding")
    assert processor.refunded() == ([600] if refunded else [])
    clock.now += LATER
    assert _reconcile(c, clock).voids == [] and len(_void_entries(c, sid)) == 1
    assert c.audit.verify().ok


def test_start_up_reconciliation_audits_a_void_it_puts_back_to_paid(
        shop: Any, tmp_path: Path, database: str | None) -> None:  # noqa: F811
    """A restart of the service (``bootstrap``) settles the void the crash left, audited."""
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=False)
    restarted = bootstrap(Settings(data_dir=tmp_path, database_url=database,
                                   payment_retry_attempts=1, payment_reconcile_after_s=0),
                          processor=processor, clock=clock)  # type: ignore[arg-type]
    try:
        row = _row(restarted, tender_id)
        assert (row.state, row.void_state) == ("captured", None)
        [entry] = _void_entries(restarted, sid)
        assert (entry.actor, entry.action) == ("reconcile", "tender_void_undone")
        assert entry.details == _undone_details(row)
        assert restarted.audit.verify().ok
    finally:
        restarted.close()
