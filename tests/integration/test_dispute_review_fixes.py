"""Regression tests of disputes and receipts after review 6, on SQLite through the service
layer and the HTTP API: a receipt is rendered and refunded at the tax it was charged at,
not at today's rate (D2: a VAT change between sale and dispute), a refund larger than the
sale was paid is refused instead of paid out of the drawer (D2), and a price change over
``PUT /products/{code}`` keeps the product's flags, so wine still needs an age check (D5).
Money is integer minor units."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cart.session import RecordItem
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import AmendedReceipt, Dispute, Payment, Receipt
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.pricing import PromotionRepository, TaxPolicy
from storefront.receipts import (
    TAX_INCLUDED_KEY,
    TAX_RATE_KEY,
    render_json,
    render_text,
    stamp_tax,
)
from storefront.security.client import authenticated
from storefront.settings import Settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Stores:
    """Start (and restart) a store on one data folder and one simulated processor, which
    keeps its captures across restarts as a real processor does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processor = SimulatedProcessor(seed=5, decline_rate=0.0)
        self.open: list[Container] = []

    def start(self, **settings: Any) -> Container:
        for c in self.open:
            c.close()
        self.open = [bootstrap(Settings(data_dir=self.folder, **settings),
                               processor=self.processor)]
        return self.open[0]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    made = Stores(tmp_path)
    yield made
    for c in made.open:
        c.close()


def _paid_exit(c: Container, items: dict[str, int], token: str = "tok_dana") -> str:
    shopper = c.shoppers.register(display_name="Dana", payment_token=token).id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    for seq, (code, qty) in enumerate(items.items(), start=1):
        c.carts.record_item(sid, RecordItem("picked", code, qty, "shelf", seq, T0, 1.0))
    out = c.checkout.exit(sid)
    assert out.status == "paid" and out.receipt_id, out
    return out.receipt_id


def _dispute(c: Container, receipt: str, key: str, qty: int, **kw: Any) -> Any:
    return c.disputes.dispute(receipt_id=receipt, dispute_key=key, product_code="TV",
                              quantity=qty, reason="faulty", **kw)


# --- D2: the tax the sale was charged at --------------------------------------------------


@pytest.mark.parametrize("stored", ["stamped", "before stamps"])
def test_a_vat_change_does_not_change_an_old_receipt_or_its_refund(
        stores: Stores, stored: str) -> None:
    c = stores.start(prices_include_tax=False, vat_rate_percent=17)
    c.catalogue.upsert([make_item("TV", "Television", 10000, "GBP")])
    receipt = _paid_exit(c, {"TV": 2})
    assert c.receipts.get(receipt).total_minor == 23400
    with c.db.begin() as db:
        row = db.get(Receipt, receipt)
        assert row is not None
        assert [(line[TAX_RATE_KEY], line[TAX_INCLUDED_KEY]) for line in row.lines] == [
            (1700, False)]  # the exit records the rate it taxed at
        if stored == "before stamps":  # as receipts issued before rates were recorded
            row.lines = [{k: v for k, v in line.items()
                          if k not in (TAX_RATE_KEY, TAX_INCLUDED_KEY)} for line in row.lines]

    c = stores.start(prices_include_tax=False, vat_rate_percent=18)  # after the change
    old = c.receipts.get(receipt)
    assert old.tax_basis == ("recorded" if stored == "stamped" else "derived")
    assert [(t.rate_bp, t.net_minor, t.tax_minor) for t in old.taxes] == [(1700, 20000, 3400)]
    assert sum(t.gross_minor for t in old.taxes) == old.total_minor == 23400
    assert "tax standard 17.00%" in render_text(old)
    assert render_json(old)["taxes"][0]["rate_bp"] == 1700

    # No till: nothing was paid in cash, so nothing is paid out in cash.
    first = _dispute(c, receipt, "d1", 1)
    assert (first.state, first.refund_minor, first.card_refund_minor,
            first.cash_refund_minor) == ("refunded", 11700, 11700, 0)
    amended = c.receipts.get(first.amended_receipt_id)
    assert (amended.total_minor, amended.tax_basis) == (11700, "recorded")
    assert [(t.rate_bp, t.tax_minor) for t in amended.taxes] == [(1700, 1700)]
    with c.db() as db:
        stored = db.get(AmendedReceipt, first.amended_receipt_id)
        assert stored is not None and stored.lines[0][TAX_RATE_KEY] == 1700

    second = _dispute(c, receipt, "d2", 1)
    assert (second.refund_minor, second.cash_refund_minor) == (11700, 0)
    assert c.receipts.get(second.amended_receipt_id).total_minor == 0
    assert first.refund_minor + second.refund_minor == 23400  # exactly what was captured


def test_prices_including_tax_refund_what_was_paid_and_stamps_keep_the_rate(
        stores: Stores) -> None:
    c = stores.start(vat_rate_percent=17)
    c.catalogue.upsert([make_item("TV", "Television", 11700, "GBP")])
    receipt = _paid_exit(c, {"TV": 1})
    with c.db.begin() as db:  # as a writer that records the rates at issue would store it
        row = db.get(Receipt, receipt)
        assert row is not None
        row.lines = stamp_tax(row.lines, TaxPolicy(True, 1700))

    c = stores.start(vat_rate_percent=18)
    doc = c.receipts.get(receipt)
    assert (doc.tax_basis, [(t.rate_bp, t.tax_minor) for t in doc.taxes]) == (
        "recorded", [(1700, 1700)])
    done = _dispute(c, receipt, "d1", 1)
    assert (done.refund_minor, done.cash_refund_minor) == (11700, 0)
    assert c.receipts.get(done.amended_receipt_id).total_minor == 0


def test_a_refund_over_what_the_sale_was_paid_is_refused_not_taken_from_the_drawer(
        stores: Stores) -> None:
    c = stores.start(prices_include_tax=False, vat_rate_percent=17)
    c.catalogue.upsert([make_item("TV", "Television", 10000, "GBP")])
    receipt = _paid_exit(c, {"TV": 1})
    with c.db.begin() as db:  # the card took 100 less than the receipt's total
        db.execute(sa.update(Payment).values(captured_minor=11600))
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=5000)
    with pytest.raises(Conflict, match="more than this sale was paid"):
        _dispute(c, receipt, "d1", 1, till_id="t1")
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Dispute)) == 0
    report = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=5000)
    assert (report.cash_refunds_minor, report.difference_minor) == (0, 0)


def test_a_receipt_whose_rates_cannot_be_told_is_not_refunded_by_guess(
        stores: Stores) -> None:
    c = stores.start(prices_include_tax=False, vat_rate_percent=18)
    PromotionRepository(c.catalogue.sessions).set_tax_category("reduced", "Reduced", 900)
    c.catalogue.upsert([make_item("TV", "Television", 10000, "GBP"),
                        make_item("BOOK", "Book", 10000, "GBP", tax_category="reduced")])
    receipt = _paid_exit(c, {"TV": 1, "BOOK": 1})
    assert c.receipts.get(receipt).total_minor == 22700
    with c.db.begin() as db:  # either rate could explain this total: no single answer
        db.execute(sa.update(Receipt).values(total_minor=22600))
    doc = c.receipts.get(receipt)
    assert doc.tax_basis == "unknown"
    assert "not recorded" in render_text(doc)
    with pytest.raises(Conflict, match="not recorded"):
        _dispute(c, receipt, "d1", 1)


def test_cash_and_card_of_a_split_sale_are_refunded_each_up_to_what_it_paid(
        stores: Stores) -> None:
    c = stores.start()
    c.catalogue.upsert([make_item("TV", "Television", 300, "GBP")])
    shopper = c.shoppers.register(display_name="Lior", payment_token="tok_lior").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TV", 2, "d", 1, T0, 1.0))
    c.carts.send_to_staffed(sid, "test")
    c.read_model.update(sid, status="staffed", staffed_reason="test")
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    c.staffed.claim(session_id=sid, staff_id="ann")
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="card", key="k1",
                          till_id="t1", amount_minor=400)
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="cash", key="k2",
                          till_id="t1", amount_minor=200)
    receipt = c.staffed.close(session_id=sid, staff_id="ann").receipt_id
    done = _dispute(c, receipt, "d1", 2, till_id="t1")
    assert (done.refund_minor, done.card_refund_minor, done.cash_refund_minor) == (
        600, 400, 200)
    assert c.receipts.get(done.amended_receipt_id).total_minor == 0


# --- D5: a price change keeps the product's flags ----------------------------------------


def test_put_product_keeps_flags_it_does_not_name(tmp_path: Path) -> None:
    c = bootstrap(Settings(data_dir=tmp_path),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    PromotionRepository(c.catalogue.sessions).set_tax_category("zero", "Zero rated", 0)
    c.catalogue.upsert([make_item("WINE-75", "Red wine 75cl", 899, "GBP", age_restricted=True,
                                  tax_category="zero", allow_discount=False)])
    client = authenticated(TestClient(create_app(c)), c.security, c.settings.store_id)
    with client:
        r = client.put("/products/WINE-75", json={"code": "WINE-75", "name": "Red wine 75cl",
                                                  "unit_price_minor": 949})
        assert r.status_code == 200, r.text
        assert (r.json()["unit_price_minor"], r.json()["age_restricted"]) == (949, True)
        item = c.catalogue.get("WINE-75")
        assert (item.unit_price_minor, item.age_restricted, item.tax_category,
                item.allow_discount, item.sold_by_weight) == (949, True, "zero", False, False)
        # The exit still stops for an age check.
        shopper = c.shoppers.register(display_name="Dana", payment_token="tok_d").id
        sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        c.carts.record_item(sid, RecordItem("picked", "WINE-75", 1, "shelf", 1, T0, 1.0))
        out = c.checkout.exit(sid)
        assert out.status == "staffed" and "age check" in (out.reason or "")

        # Flags named in the body change; only an explicit false clears the restriction.
        r = client.put("/products/WINE-75", json={
            "code": "WINE-75", "name": "Red wine 75cl", "unit_price_minor": 949,
            "age_restricted": False, "tax_category": "standard", "allow_discount": True})
        assert r.status_code == 200, r.text
        item = c.catalogue.get("WINE-75")
        assert (item.age_restricted, item.tax_category, item.allow_discount) == (
            False, "standard", True)
        assert client.get("/products/WINE-75").json()["age_restricted"] is False

        # A new product gets the defaults; an unknown tax category or a non-boolean flag
        # is refused.
        r = client.put("/products/NEW-1", json={"code": "NEW-1", "name": "New",
                                                "unit_price_minor": 10})
        assert r.status_code == 200 and r.json()["age_restricted"] is False
        r = client.put("/products/NEW-1", json={"code": "NEW-1", "name": "New",
                                                "unit_price_minor": 10,
                                                "tax_category": "nosuch"})
        assert r.status_code == 422, r.text
        r = client.put("/products/NEW-1", json={"code": "NEW-1", "name": "New",
                                                "unit_price_minor": 10,
                                                "age_restricted": "no"})
        assert r.status_code == 422, r.text
        assert c.catalogue.get("NEW-1").tax_category == "standard"
    c.close()


# --- The same dispute sent again: at once, and with other content ---------------------------


def test_the_same_dispute_sent_twice_at_once_answers_both_with_one_refund(
        stores: Stores) -> None:
    """Both requests pass the key look-up before either has stored its row; the one that
    waits on the receipt's lock must answer with the first one's dispute, not dispute the
    amended receipt again (which has no TV left: 'not on the receipt')."""
    from concurrent.futures import ThreadPoolExecutor

    c = stores.start()
    c.catalogue.upsert([make_item("TV", "Television", 10000, "GBP")])
    receipt = _paid_exit(c, {"TV": 1})
    real_by_key = c.disputes._by_key
    c.disputes._by_key = lambda key: None  # type: ignore[method-assign]  # both miss it

    def send(_: int) -> Any:
        try:
            return _dispute(c, receipt, "same", 1)
        except Conflict as exc:  # the first one's card refund still in flight: retry
            assert "in progress" in str(exc), exc
            return None

    with ThreadPoolExecutor(4) as pool:
        results = [r for r in pool.map(send, range(4)) if r is not None]
    c.disputes._by_key = real_by_key  # type: ignore[method-assign]
    results.append(_dispute(c, receipt, "same", 1))  # the retry once it has landed
    assert {r.dispute_id for r in results} == {results[0].dispute_id}
    assert {r.refund_minor for r in results} == {10000}
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Dispute)) == 1
        assert db.scalar(sa.select(sa.func.count()).select_from(AmendedReceipt)) == 1
        assert db.scalar(sa.select(Payment.refunded_minor)) == 10000


def test_a_dispute_key_sent_again_with_another_reason_or_till_is_a_conflict(
        stores: Stores) -> None:
    c = stores.start()
    c.catalogue.upsert([make_item("TV", "Television", 300, "GBP")])
    receipt = _paid_exit(c, {"TV": 2})
    first = _dispute(c, receipt, "k", 1)
    assert _dispute(c, receipt, "k", 1).dispute_id == first.dispute_id  # same content
    with pytest.raises(Conflict, match="another reason"):
        c.disputes.dispute(receipt_id=receipt, dispute_key="k", product_code="TV",
                           quantity=1, reason="other")
    with pytest.raises(Conflict, match="another dispute"):
        _dispute(c, receipt, "k", 2)

    shopper = c.shoppers.register(display_name="Cash", payment_token="tok_c").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TV", 1, "d", 1, T0, 1.0))
    c.carts.send_to_staffed(sid, "test")
    c.read_model.update(sid, status="staffed", staffed_reason="test")
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    c.till.open_drawer(till_id="t2", staff_id="bob", float_minor=1000)
    c.staffed.claim(session_id=sid, staff_id="ann")
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="cash", key="c1",
                          till_id="t1", amount_minor=300)
    cash_receipt = c.staffed.close(session_id=sid, staff_id="ann").receipt_id
    paid = _dispute(c, cash_receipt, "cash", 1, till_id="t1")
    assert paid.cash_refund_minor == 300
    assert _dispute(c, cash_receipt, "cash", 1, till_id="t1").dispute_id == paid.dispute_id
    with pytest.raises(Conflict, match="till t1"):
        _dispute(c, cash_receipt, "cash", 1, till_id="t2")


def test_a_line_refunded_in_full_says_so_when_disputed_again(stores: Stores) -> None:
    from storefront.errors import InvalidInput

    c = stores.start()
    c.catalogue.upsert([make_item("TV", "Television", 300, "GBP")])
    receipt = _paid_exit(c, {"TV": 2})
    _dispute(c, receipt, "first", 1)
    with pytest.raises(InvalidInput, match="only 1 of TV is left on the receipt"):
        _dispute(c, receipt, "too-many", 2)
    _dispute(c, receipt, "second", 1)
    with pytest.raises(InvalidInput, match="nothing of product TV is left to dispute"):
        _dispute(c, receipt, "third", 1)
