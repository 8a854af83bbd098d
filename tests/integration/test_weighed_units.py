"""Goods sold by weight counted in units, not weighed, over HTTP (SQLite only: pricing
rules, no SQL of their own; the staffed checkout on PostgreSQL is tested elsewhere):
the exit never prices their units as grams but sends the cart to the staffed checkout
with the reason; there the line blocks payment until staff correct it with its weight
in grams, and the sale is then priced per kg. Money is integer minor units."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cart.events import WeighedItemAdded
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.security.errors import PermissionDenied
from storefront.settings import Settings

UNITS_REASON = "weighed item APPLE was counted in units, not weighed: needs a staff check"


class Shop:
    """A store over HTTP: APPLE sold by weight at 3.00 GBP/kg, TEA at 1.50 GBP each."""

    def __init__(self, client: TestClient, container: Container,
                 processor: SimulatedProcessor) -> None:
        self.client, self.container, self.processor = client, container, processor
        self.shoppers = 0

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.put(path, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def post(self, path: str, body: dict[str, Any] | None, status: int) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        assert r.status_code == status, r.text
        return dict(r.json()) if r.content else {}

    def get(self, path: str) -> dict[str, Any]:
        r = self.client.get(path)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def session(self, picks: dict[str, int], grams: dict[str, int] | None = None) -> str:
        """A session of a new shopper with ``picks`` (units) and ``grams`` (weighed)."""
        self.shoppers += 1
        shopper = self.post("/shoppers", {"display_name": "Noa",
                                          "payment_token": f"tok_noa_{self.shoppers}"}, 201)
        sid = self.container.gates.open_session(shopper_id=shopper["id"], entry_method="palm")
        at = datetime.now(UTC) - timedelta(seconds=30)
        for seq, (code, qty) in enumerate(sorted(picks.items())):
            self.post(f"/sessions/{sid}/events", {
                "kind": "picked", "product_code": code, "quantity": qty,
                "device_id": "cart-1", "device_seq": seq,
                "sensor_time": (at + timedelta(seconds=seq)).isoformat()}, 201)
        for seq, (code, g) in enumerate(sorted((grams or {}).items()), start=100):
            self.container.carts.record_device_event(sid, WeighedItemAdded(
                code=code, grams=g, device_id="scale-1", device_seq=seq,
                sensor_time=at + timedelta(seconds=seq - 90), confidence=1.0))
        return sid


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    processor = SimulatedProcessor(seed=5, decline_rate=0.0)
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=None),
                          processor=processor)
    with authenticated(TestClient(create_app(container)), container.security,
                       container.settings.store_id) as client:
        shop = Shop(client, container, processor)
        shop.put("/products/APPLE", {"code": "APPLE", "name": "Apples per kg",
                                     "unit_price_minor": 300, "sold_by_weight": True})
        shop.put("/products/TEA", {"code": "TEA", "name": "Tea", "unit_price_minor": 150})
        yield shop
    container.close()


def test_a_unit_line_of_a_weighed_product_goes_to_staff_not_priced_as_grams(shop: Shop) -> None:
    sid = shop.session({"APPLE": 1, "TEA": 2})
    out = shop.post(f"/sessions/{sid}/exit", None, 200)
    assert out["status"] == "staffed" and out["receipt_id"] is None, out
    assert UNITS_REASON in out["reason"]
    assert shop.processor.captured_total() == 0  # nothing charged, the hold released
    queue = shop.client.get("/staff/queue").json()
    assert [e["session_id"] for e in queue] == [sid] and UNITS_REASON in queue[0]["reason"]


def test_staff_see_the_unit_line_as_a_blocker_and_fix_it_with_grams(shop: Shop) -> None:
    sid = shop.session({"APPLE": 1, "TEA": 2})
    assert shop.post(f"/sessions/{sid}/exit", None, 200)["status"] == "staffed"
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ann"}, 200)
    cart = shop.get(f"/staff/sessions/{sid}")
    blocker = ("weighed item APPLE was counted in units (1), not weighed: needs a correction "
               "with its weight in grams")
    assert cart["total_minor"] is None and cart["lines"] == [] and not cart["can_close"]
    assert blocker in cart["issues"] and blocker in cart["blockers"]
    r = shop.client.post(f"/staff/sessions/{sid}/tenders", json={
        "staff_id": "ann", "kind": "cash", "key": "c0", "till_id": "till-1",
        "amount_minor": 100})
    assert r.status_code == 409 and "counted in units" in r.text  # no tender before the fix
    fixed = shop.post(f"/staff/sessions/{sid}/corrections", {
        "staff_id": "ann", "product_code": "APPLE", "quantity": 1500,
        "reason": "weighed at the till: 1.5 kg"}, 201)
    assert (fixed["correction"]["quantity_before"], fixed["correction"]["quantity_after"]) \
        == (1, 1500)
    cart = fixed["cart"]
    apple = next(line for line in cart["lines"] if line["code"] == "APPLE")
    assert (apple["quantity"], apple["sold_by_weight"], apple["payable_minor"]) == (1500, True,
                                                                                   450)
    assert cart["total_minor"] == 450 + 2 * 150 and cart["issues"] == []
    assert cart["blockers"] == ["balance due 7.50 GBP"]
    shop.post("/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 0}, 201)
    shop.post(f"/staff/sessions/{sid}/tenders", {
        "staff_id": "ann", "kind": "cash", "key": "c1", "till_id": "till-1",
        "amount_minor": 750}, 201)
    closed = shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "ann"}, 200)
    assert closed["total_minor"] == 750
    receipt = shop.get(f"/receipts/{closed['receipt_id']}")
    assert {line["code"]: line["quantity"] for line in receipt["lines"]} == {"APPLE": 1500,
                                                                           "TEA": 2}


def test_a_staffed_cart_of_weighed_units_blocks_whatever_sent_it_there(shop: Shop) -> None:
    """A session sent to staff for another reason (a declined card) still shows the line."""
    sid = shop.session({"APPLE": 3})
    shop.container.carts.close_at_exit(sid)
    shop.container.carts.send_to_staffed(sid, "payment declined (test)")
    shop.container.read_model.update(sid, status="staffed",
                                     staffed_reason="payment declined (test)")
    cart = shop.get(f"/staff/sessions/{sid}")
    assert cart["total_minor"] is None and any(
        "weighed item APPLE was counted in units (3)" in b for b in cart["blockers"])


def test_weighed_goods_with_grams_are_still_paid_at_the_exit(shop: Shop) -> None:
    sid = shop.session({"TEA": 1}, grams={"APPLE": 1250})
    out = shop.post(f"/sessions/{sid}/exit", None, 200)
    # 3.00 GBP/kg x 1.250 kg = 375 p, plus one tea at 150 p.
    assert (out["status"], out["total_minor"]) == ("paid", 525), out
    apple = next(line for line in out["lines"] if line["code"] == "APPLE")
    assert (apple["quantity"], apple["sold_by_weight"]) == (1250, True)
    assert shop.processor.captured_total() == 525


def test_weighed_and_counted_in_units_in_one_cart_goes_to_staff(shop: Shop) -> None:
    sid = shop.session({"APPLE": 2}, grams={"APPLE": 800})
    out = shop.post(f"/sessions/{sid}/exit", None, 200)
    assert out["status"] == "staffed" and "APPLE" in out["reason"]
    assert shop.processor.captured_total() == 0


def test_a_cashier_weighs_a_line_within_the_item_limit(shop: Shop) -> None:
    """The cashier correction limit counts items: the weight of a line sold by weight is
    one item whatever its grams; units count one each, summed over the session."""
    sid = shop.session({"APPLE": 1, "TEA": 2})
    assert shop.post(f"/sessions/{sid}/exit", None, 200)["status"] == "staffed"
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ann"}, 200)
    staffed = shop.container.staffed
    weighed = staffed.correct(session_id=sid, staff_id="ann", product_code="APPLE",
                              quantity=1500, reason="weighed: 1.5 kg", max_change=20)
    assert (weighed.quantity_before, weighed.quantity_after) == (1, 1500)
    with pytest.raises(PermissionDenied, match=r"a change of 20 item\(s\) \(with 1 corrected"
                                               r" on this session before\) is over your limit"):
        staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=22,
                        reason="a crate", max_change=20)
    staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=21,
                    reason="a crate", max_change=20)  # 1 + 19 = 20: within the limit
    assert staffed.cart(sid).total_minor == 450 + 21 * 150
