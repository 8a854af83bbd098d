"""Card tenders left ``voiding`` are settled by reconciliation, and ``Till._refund_void`` is
hardened, on SQLite and PostgreSQL:

- a void whose refund went through but whose outcome was never recorded (lost answer,
  crash) is found under ``void:<tender id>`` and recorded ``voided`` with the refund id
  and a ``tender_voided`` entry (actor ``reconcile``); one the processor has no record of
  is put back to paid (no void; audited ``tender_void_undone``, see
  ``test_void_reconcile_audit.py``); one the processor cannot answer about is left for the
  next run; a young one, or one a resend works on, is left alone; the command prints them;
- a refused refund whose look-up fails is kept ``voiding`` (PaymentPending), never undone;
- a void whose last write loses to another request answers with the winner's ``voided``
  tender, or a Conflict saying its refund went through.

Money is integer minor units; times UTC.
"""

from __future__ import annotations

import json
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
from storefront.db.models import AuditEntry, Tender
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.payments.base import PaymentPending
from storefront.payments.reconcile import ReconcileReport
from storefront.settings import Settings
from storefront.till import VoidResolution
from tests.integration.test_staffed_reconcile import _reconcile
from tests.integration.test_staffed_review_fixes import Clock, Crash, _card, _staffed
from tests.integration.test_staffed_void import Refunds, _void, _voids

LATER = timedelta(minutes=2)


class Hooked(Refunds):
    """``Refunds`` that can die before a refund is sent (``crash_refund``), run a hook once
    after a refund took effect (``after_refund``) or before a look-up (``before_lookup``)."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        super().__init__(inner)
        self.crash_refund = False
        self.after_refund: Callable[[], None] | None = None
        self.before_lookup: Callable[[], None] | None = None

    def refund(self, **kw: Any) -> Any:
        if self.crash_refund:
            self.crash_refund = False
            raise Crash
        done = super().refund(**kw)
        hook, self.after_refund = self.after_refund, None
        if hook is not None:
            hook()
        return done

    def lookup(self, **kw: Any) -> Any:
        hook, self.before_lookup = self.before_lookup, None
        if hook is not None:
            hook()
        return super().lookup(**kw)


@pytest.fixture
def shop(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Hooked]]:
    clock = Clock()
    processor = Hooked(SimulatedProcessor(seed=5, decline_rate=0.0))
    c = bootstrap(Settings(data_dir=tmp_path, database_url=database,
                           payment_retry_attempts=1),
                  processor=processor, clock=clock)  # type: ignore[arg-type]
    c.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    yield c, clock, processor
    c.close()


def _row(c: Container, tender_id: str) -> Tender:
    with c.db() as db:
        return db.get_one(Tender, tender_id)


def _one(report: ReconcileReport) -> VoidResolution:
    assert len(report.voids) == 1, report
    return report.voids[0]


def _stuck(c: Container, clock: Clock, processor: Hooked, *, refunded: bool,
           device_seq: int = 1) -> tuple[str, str]:
    """A captured 6.00 GBP card tender whose void died in mid-refund (``refunded``: after
    the refund took effect, its answer lost; else before it was sent); the clock then
    moves past ``AFTER``. Returns (session id, tender id)."""
    sid = _staffed(c, clock, device_seq=device_seq)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    if refunded:
        processor.lose_refunds = 1
        with pytest.raises(PaymentPending):
            c.staffed.void_tender(**_void(sid, card.id))
    else:
        processor.crash_refund = True
        with pytest.raises(Crash):
            c.staffed.void_tender(**_void(sid, card.id))
    assert _row(c, card.id).void_state == "voiding"
    clock.now += LATER
    return sid, card.id


def test_a_refund_that_went_through_is_recorded_voided(shop: Any) -> None:
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=True)
    report = _reconcile(c, clock)
    done = _one(report)
    row = _row(c, tender_id)
    assert (done.outcome, done.refund_id, done.amount_minor) == ("voided", row.void_refund_id,
                                                                 600)
    assert (row.state, row.void_state, row.voided_by) == ("voided", "voided", "ann")
    assert (report.voids_looked_up, report.voids_voided, report.voids_not_voided,
            report.voids_still_voiding, report.voids_busy) == (1, 1, 0, 0, 0)
    [entry] = _voids(c, sid)
    assert (entry.actor, entry.details["refund_id"], entry.details["voided_minor"],
            entry.details["reason"]) == ("reconcile", row.void_refund_id, 600, "wrong tender")
    assert processor.refunded() == [600]
    assert c.staffed.cart(sid).paid_minor == 0
    assert _reconcile(c, clock).voids == []  # settled once
    assert c.staffed.void_tender(**_void(sid, tender_id))[0].void_refund_id == row.void_refund_id
    assert processor.refunded() == [600] and c.audit.verify().ok


def test_a_refund_the_processor_has_no_record_of_puts_the_tender_back_to_paid(
        shop: Any) -> None:
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=False)
    done = _one(_reconcile(c, clock))
    assert (done.outcome, done.refund_id) == ("not_voided", None)
    assert "no record" in (done.reason or "")
    row = _row(c, tender_id)
    assert (row.state, row.void_state, row.void_reason, row.voided_by) == (
        "captured", None, None, None)
    assert _voids(c, sid) == [] and processor.refunded() == []
    cart = c.staffed.cart(sid)
    assert cart.paid_minor == 600
    assert not any("void of tender" in b for b in cart.blockers)
    # Staff may void it again: it is refunded once.
    voided, _ = c.staffed.void_tender(**_void(sid, tender_id))
    assert (voided.state, processor.refunded()) == ("voided", [600])


def test_a_processor_that_cannot_answer_leaves_the_tender_voiding(shop: Any) -> None:
    c, clock, processor = shop
    _, tender_id = _stuck(c, clock, processor, refunded=True)
    processor.lookups_down = True
    done = _one(_reconcile(c, clock))
    assert done.outcome == "still_voiding"
    assert _row(c, tender_id).void_state == "voiding"
    processor.lookups_down = False
    clock.now += LATER  # the failed run stamped the tender: the next run waits its turn
    assert _one(_reconcile(c, clock)).outcome == "voided"
    assert processor.refunded() == [600]


def test_young_voids_and_voids_a_resend_works_on_are_left_alone(shop: Any) -> None:
    c, clock, processor = shop
    sid, tender_id = _stuck(c, clock, processor, refunded=True)
    clock.now -= LATER  # as if reconciliation ran right after the crash
    assert _reconcile(c, clock).voids == []
    clock.now += LATER

    # A resend of the void slips in after reconciliation read the tender: it records the
    # void first; reconciliation backs off (busy) and writes nothing.
    def resend() -> None:
        processor.before_lookup = None
        c.staffed.void_tender(**_void(sid, tender_id))

    with c.db() as db:
        assert db.get_one(Tender, tender_id).void_state == "voiding"
    processor.before_lookup = resend
    done = _one(_reconcile(c, clock))
    assert done.outcome == "busy"
    row = _row(c, tender_id)
    assert (row.state, row.void_state) == ("voided", "voided")
    [entry] = _voids(c, sid)
    assert entry.actor == "staff:ann"
    assert processor.refunded() == [600]


def test_a_refused_refund_whose_look_up_fails_stays_voiding(shop: Any) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.refuse_refunds = 1
    original = processor.refund

    def refused(**kw: Any) -> Any:
        try:
            return original(**kw)
        finally:  # the look-up after the refusal times out
            processor.lookups_down = True

    processor.refund = refused  # type: ignore[method-assign]
    with pytest.raises(PaymentPending, match="stays voiding"):
        c.staffed.void_tender(**_void(sid, card.id))
    assert (_row(c, card.id).void_state, processor.refunded()) == ("voiding", [])
    processor.lookups_down = False
    clock.now += LATER
    assert _one(_reconcile(c, clock)).outcome == "not_voided"
    assert _row(c, card.id).state == "captured"


def test_a_void_whose_last_write_loses_answers_with_the_winner(shop: Any) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    winner: list[Any] = []
    # Another request of the same void finishes it while this one's refund is answered.
    processor.after_refund = lambda: winner.append(
        c.staffed.void_tender(**_void(sid, card.id))[0])
    voided, _ = c.staffed.void_tender(**_void(sid, card.id))
    assert voided == winner[0]
    assert (voided.state, voided.void_state) == ("voided", "voided")
    assert len(_voids(c, sid)) == 1
    assert processor.refunded() == [600]


def test_a_void_whose_tender_was_put_back_meanwhile_says_its_refund_went_through(
        shop: Any) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))

    def put_back() -> None:
        with c.db.begin() as db:
            db.execute(sa.update(Tender).where(Tender.id == card.id)
                       .values(void_state=None, void_reason=None, voided_by=None))

    processor.after_refund = put_back
    with pytest.raises(Conflict, match=r"refund \S+ of tender .* went through"):
        c.staffed.void_tender(**_void(sid, card.id))
    assert _voids(c, sid) == []


def test_the_command_reports_the_voids_it_settled(tmp_path: Path, database: str | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "processor.db"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(state))
    monkeypatch.setenv("STOREFRONT_PAYMENT_DECLINE_RATE", "0")
    if database is not None:
        monkeypatch.setenv("STOREFRONT_DATABASE_URL", database)
    clock = Clock()
    processor = Hooked(SimulatedProcessor(seed=5, decline_rate=0.0, state_path=state))
    c = bootstrap(Settings(payment_retry_attempts=1), processor=processor,  # type: ignore[arg-type]
                  clock=clock)
    c.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    _, refunded = _stuck(c, clock, processor, refunded=True)
    _, unsent = _stuck(c, clock, processor, refunded=False, device_seq=2)
    c.close()
    processor.inner.close()
    result = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["voids_looked_up"], report["voids_voided"], report["voids_not_voided"],
            report["voids_still_voiding"], report["voids_busy"]) == (2, 1, 1, 0, 0)
    assert {v["tender_id"]: v["outcome"] for v in report["voids"]} == {
        refunded: "voided", unsent: "not_voided"}
    engine = sa.create_engine(Settings().resolved_database_url())
    with engine.connect() as db:
        states = dict(db.execute(sa.select(Tender.id, Tender.void_state)).all())
        audited = db.execute(sa.select(AuditEntry.actor, AuditEntry.action, AuditEntry.details)
                             .where(AuditEntry.actor == "reconcile")).all()
    engine.dispose()
    assert states == {refunded: "voided", unsent: None}
    # Each change the command made is audited (actor reconcile), with the tender's id.
    assert sorted((a, json.loads(d)["tender_id"]) for _, a, d in audited) == sorted(
        [("tender_voided", refunded), ("tender_void_undone", unsent)])
    again = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "0"])
    assert again.exit_code == 0 and json.loads(again.output)["voids"] == []
