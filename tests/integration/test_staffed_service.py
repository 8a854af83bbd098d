"""The staffed checkout, till and disputes on SQLite through the service layer: claims that
lapse, racing claims, declined cards at the till, cash refunds in the Z report, and a
failed refund that resumes under the same dispute key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cart.session import RecordItem
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.errors import Conflict, PaymentError
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from storefront.staffed import CLAIM_TTL


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Flaky:
    """The simulated processor; ``fail_refunds`` refunds fail first, ``declined`` tokens
    have their holds declined."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        self.inner = inner
        self.fail_refunds = 0
        self.declined: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def authorize(self, **kw: Any) -> Any:
        if kw["token"] in self.declined:
            from storefront.payments import Authorization
            return Authorization("auth_declined", "declined", kw["amount_minor"],
                                 kw["currency"], "insufficient funds (test)")
        return self.inner.authorize(**kw)

    def refund(self, **kw: Any) -> Any:
        if self.fail_refunds:
            self.fail_refunds -= 1
            raise PaymentError("processor answered 503 (test)")
        return self.inner.refund(**kw)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Container, Clock, Flaky]]:
    clock = Clock()
    processor = Flaky(SimulatedProcessor(seed=3, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path), processor=processor,  # type: ignore[arg-type]
                          clock=clock)
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    yield container, clock, processor
    container.close()


def _staffed(c: Container, clock: Clock, qty: int = 2) -> str:
    shopper = c.shoppers.register(display_name="Lior", payment_token="tok_lior").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TEA", qty, "d", 1, clock.now, 1.0))
    c.carts.send_to_staffed(sid, "payment declined (test)")
    c.read_model.update(sid, status="staffed", staffed_reason="payment declined (test)")
    return sid


def test_a_claim_lapses_after_the_ttl(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.staffed.claim(session_id=sid, staff_id="ann")
    clock.now += CLAIM_TTL - timedelta(seconds=1)
    with pytest.raises(Conflict, match="claimed by staff ann"):
        c.staffed.claim(session_id=sid, staff_id="bob")
    c.staffed.confirm_age(session_id=sid, staff_id="ann")  # activity renews the claim
    clock.now += CLAIM_TTL - timedelta(seconds=1)
    with pytest.raises(Conflict):
        c.staffed.claim(session_id=sid, staff_id="bob")
    clock.now += timedelta(seconds=2)
    assert c.staffed.claim(session_id=sid, staff_id="bob").staff_id == "bob"
    with pytest.raises(Conflict, match="claimed by staff bob"):
        c.staffed.confirm_age(session_id=sid, staff_id="ann")


def test_racing_claims_have_one_winner(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def claim(staff: str) -> None:
        barrier.wait()
        try:
            c.staffed.claim(session_id=sid, staff_id=staff)
            outcomes.append("won")
        except Conflict:
            outcomes.append("409")

    threads = [threading.Thread(target=claim, args=(f"s{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["409"] * 5 + ["won"]


def test_declined_card_at_the_till_leaves_the_balance_due(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    c.staffed.claim(session_id=sid, staff_id="ann")
    processor.declined.add("tok_other")
    tender, balance = c.staffed.take_tender(session_id=sid, staff_id="ann", kind="card",
                                            key="k1", till_id="t1", amount_minor=600,
                                            payment_token="tok_other")
    assert (tender.state, balance) == ("declined", 600) and "insufficient" in (tender.reason or "")
    with pytest.raises(Conflict, match="already used"):
        c.staffed.take_tender(session_id=sid, staff_id="ann", kind="card", key="k1",
                              till_id="t1", amount_minor=500)
    tender, balance = c.staffed.take_tender(session_id=sid, staff_id="ann", kind="card",
                                            key="k2", till_id="t1", amount_minor=600)
    assert (tender.state, balance) == ("captured", 0)
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 600


def test_cash_refund_of_a_dispute_comes_out_of_the_drawer(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock, qty=3)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    c.staffed.claim(session_id=sid, staff_id="ann")
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="cash", key="c",
                          till_id="t1", amount_minor=1000)
    receipt = c.staffed.close(session_id=sid, staff_id="ann").receipt_id
    with pytest.raises(Exception, match="till_id"):
        c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                           quantity=1, reason="one was broken")
    done = c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                              quantity=1, reason="one was broken", till_id="t1")
    assert (done.state, done.cash_refund_minor, done.card_refund_minor) == ("refunded", 300, 0)
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1600)
    assert (z.cash_sales_minor, z.cash_refunds_minor, z.expected_cash_minor,
            z.difference_minor) == (900, 300, 1600, 0)


def test_a_failed_refund_resumes_under_the_same_key_and_refunds_once(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    c.staffed.claim(session_id=sid, staff_id="ann")
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="card", key="k",
                          till_id="t1", amount_minor=600)
    receipt = c.staffed.close(session_id=sid, staff_id="ann").receipt_id
    processor.fail_refunds = 1
    args = {"receipt_id": receipt, "dispute_key": "d1", "product_code": "TEA", "quantity": 2,
            "reason": "not bought"}
    with pytest.raises(PaymentError, match="send the dispute again"):
        c.disputes.dispute(**args)
    pending = c.receipts.latest(receipt)
    assert pending.dispute is not None and pending.dispute["refund_state"] == "refunding"
    done = c.disputes.dispute(**args)
    assert (done.state, done.refund_minor) == ("refunded", 600)
    assert c.disputes.dispute(**args) == done
    with pytest.raises(PaymentError):  # nothing left to refund on that capture
        processor.inner.refund(capture_id=done.refunds[0]["capture_id"], amount_minor=1,
                               idempotency_key="probe")
    assert c.receipts.get(receipt).total_minor == 600  # the original is kept
    assert c.receipts.latest(receipt).total_minor == 0
