"""Review flags decided over the JSON API as in the staff console: accept, correct, reject.

The break-test this answers: a low-confidence pick is left out of the cart and flagged;
resolving the flag over the API used to only mark it resolved, so the item stayed out
and the sale closed without it, and the flag did not say what the event was. Now the
flag view describes the event, the API requires a decision (the console's
``storefront.review.ReviewQueue.decide``), a retry answers with the stored outcome and
another decision for a resolved flag is 409.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.review import ReviewQueue
from storefront.security.client import authenticated
from storefront.settings import Settings

PRODUCTS = {"WATER": ("Sparkling water 1l", 95), "BREAD": ("Sourdough loaf", 320)}
LEFT_OUT = ("picked 1 x BREAD at confidence 0.2 (below the 0.5 threshold): left out of "
            "the cart until staff decide")


@dataclass
class Shop:
    client: TestClient
    container: Container
    shoppers: int = 0
    devices: dict[str, str] = field(default_factory=dict)

    def flagged_session(self, *, exit_: bool = True) -> str:
        """A session with 1 WATER and a low-confidence pick of 1 BREAD (``shelf-<n>#1``
        for the n-th session), exited to the staffed checkout unless ``exit_`` is False;
        returns its id."""
        self.shoppers += 1
        device = f"shelf-{self.shoppers}"
        r = self.client.post("/shoppers", json={"display_name": "Dana",
                                                "payment_token": f"tok_{'x' * self.shoppers}"})
        assert r.status_code == 201, r.text
        sid = self.container.gates.open_session(shopper_id=r.json()["id"], entry_method="palm")
        now = datetime.now(UTC) - timedelta(seconds=30)
        for seq, (code, confidence) in enumerate([("WATER", 1.0), ("BREAD", 0.2)]):
            r = self.client.post(f"/sessions/{sid}/events", json={
                "kind": "picked", "product_code": code, "quantity": 1, "device_id": device,
                "device_seq": seq, "sensor_time": (now + timedelta(seconds=seq)).isoformat(),
                "confidence": confidence})
            assert r.status_code == 201, r.text
        self.devices[sid] = device
        if exit_:
            r = self.client.post(f"/sessions/{sid}/exit")
            assert r.status_code == 200 and r.json()["status"] == "staffed", r.text
        return sid

    def post(self, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        assert r.status_code == status, r.text
        return r.json() if r.content else {}

    def decide(self, sid: str, decision: str | None, note: str = "ok, checked", *,
               staff: str = "ann", status: int = 200, **extra: Any) -> dict[str, Any]:
        body = {"staff_id": staff, "device_id": self.devices[sid], "device_seq": 1,
                "note": note, **extra}
        if decision is not None:
            body["decision"] = decision
        return self.post(f"/staff/sessions/{sid}/flags/resolve", body, status)

    def cart(self, sid: str) -> dict[str, Any]:
        r = self.client.get(f"/staff/sessions/{sid}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def close_by_cash(self, sid: str, staff: str = "ann") -> dict[str, Any]:
        """Pay the balance in cash at till-1 and close; returns the receipt."""
        due = self.cart(sid)["balance_due_minor"]
        self.post(f"/staff/sessions/{sid}/claim", {"staff_id": staff}, 200)
        self.post(f"/staff/sessions/{sid}/tenders", {
            "staff_id": staff, "kind": "cash", "key": f"cash-{sid}", "till_id": "till-1",
            "amount_minor": due}, 201)
        closed = self.post(f"/staff/sessions/{sid}/close", {"staff_id": staff}, 200)
        r = self.client.get(f"/receipts/{closed['receipt_id']}")
        assert r.status_code == 200, r.text
        receipt: dict[str, Any] = r.json()
        return receipt


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=SimulatedProcessor(seed=5, decline_rate=0.0))
    container.catalogue.upsert([make_item(code, name, price, "GBP")
                                for code, (name, price) in PRODUCTS.items()])
    with authenticated(TestClient(create_app(container)), container.security,
                       container.settings.store_id, roles={"cal": "cashier"}) as client:
        shop = Shop(client, container)
        shop.post("/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 0}, 201)
        yield shop
    container.close()


def reason_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "reason"} and len(body["reason"]) > 5, body
    return str(body["reason"])


def lines(cart: dict[str, Any]) -> dict[str, int]:
    return {line["code"]: line["quantity"] for line in cart["lines"]}


def test_the_flag_says_what_the_event_was_and_that_it_is_left_out(shop: Shop) -> None:
    sid = shop.flagged_session()
    cart = shop.cart(sid)
    assert lines(cart) == {"WATER": 1} and cart["total_minor"] == 95
    [flag] = cart["flags"]
    assert (flag["reason"], flag["product_code"], flag["device_id"], flag["device_seq"]) == (
        "low_confidence", "BREAD", "shelf-1", 1)
    assert flag["detail"] == LEFT_OUT and flag["resolved_by"] is None
    assert any("unresolved flag" in b for b in cart["blockers"])


def test_a_missing_or_unknown_decision_is_422_and_changes_nothing(shop: Shop) -> None:
    sid = shop.flagged_session()
    before = shop.cart(sid)
    url = f"/staff/sessions/{sid}/flags/resolve"
    base = {"staff_id": "ann", "device_id": "shelf-1", "device_seq": 1, "note": "ok, checked"}
    assert "decision is required" in reason_of(shop.client.post(url, json=base), 422)
    assert "decision" in reason_of(shop.client.post(url, json=base | {"decision": None}), 422)
    reason_of(shop.client.post(url, json=base | {"decision": "maybe"}), 422)
    assert "corrected_quantity" in reason_of(
        shop.client.post(url, json=base | {"decision": "correct"}), 422)
    assert "corrected_quantity" in reason_of(
        shop.client.post(url, json=base | {"decision": "accept", "corrected_quantity": 1}), 422)
    reason_of(shop.client.post(url, json=base | {"decision": "correct",
                                                 "corrected_quantity": -1}), 422)
    reason_of(shop.client.post(url, json=base | {"decision": "accept", "note": " "}), 422)
    reason_of(shop.client.post(url, json=base | {"decision": "accept", "note": "x" * 251}), 422)
    reason_of(shop.client.post(url, json=base | {"decision": "accept", "device_seq": 7}), 404)
    assert shop.cart(sid) == before


def test_accept_puts_the_item_in_and_the_sale_closes_with_it(shop: Shop) -> None:
    sid = shop.flagged_session()
    done = shop.decide(sid, "accept")
    assert (done["session_id"], done["device_id"], done["device_seq"], done["decision"]) == (
        sid, "shelf-1", 1, "accept")
    correction = done["correction"]
    assert (correction["product_code"], correction["quantity_before"],
            correction["quantity_after"], correction["staff_id"]) == ("BREAD", 0, 1, "ann")
    assert correction["reason"] == "review accept of flag shelf-1#1: ok, checked"
    [flag] = done["flags"]
    assert flag["resolved_by"] == "ann" and flag["note"] == "accept: ok, checked"
    cart = shop.cart(sid)
    assert done["cart"] == cart
    assert lines(cart) == {"BREAD": 1, "WATER": 1} and cart["total_minor"] == 95 + 320
    assert cart["claim"] is None and cart["blockers"] == ["balance due 4.15 GBP"]
    assert ReviewQueue.of(shop.container).pending() == []
    # Audited like the console's decision: the correction's entry in the audit log.
    [entry] = [e for e in shop.container.audit.entries(limit=1000) if e.action == "correction"]
    assert entry.actor == "staff:ann" and entry.subject == f"session:{sid}"
    assert entry.details["correction_id"] == correction["id"]
    assert (entry.details["before"], entry.details["after"]) == (0, 1)
    assert entry.details["reason"] == "review accept of flag shelf-1#1: ok, checked"
    receipt = shop.close_by_cash(sid)
    assert receipt["total_minor"] == 415
    assert sorted((line["code"], line["quantity"]) for line in receipt["lines"]) == [
        ("BREAD", 1), ("WATER", 1)]


def test_reject_keeps_the_item_out(shop: Shop) -> None:
    sid = shop.flagged_session()
    done = shop.decide(sid, "reject", "not on the camera")
    assert done["correction"] is None and done["flags"][0]["note"] == "reject: not on the camera"
    cart = shop.cart(sid)
    assert lines(cart) == {"WATER": 1} and cart["corrections"] == [] and cart["claim"] is None
    receipt = shop.close_by_cash(sid)
    assert [(line["code"], line["quantity"]) for line in receipt["lines"]] == [("WATER", 1)]


def test_correct_sets_the_counted_quantity_and_a_cashier_keeps_the_limit(shop: Shop) -> None:
    sid = shop.flagged_session()
    over = shop.client.post(f"/staff/sessions/{sid}/flags/resolve", json={
        "staff_id": "cal", "device_id": "shelf-1", "device_seq": 1, "decision": "correct",
        "corrected_quantity": 25, "note": "a whole crate"})
    assert "over your limit of 20" in reason_of(over, 403)
    cart = shop.cart(sid)
    assert cart["corrections"] == [] and cart["flags"][0]["resolved_by"] is None
    assert cart["claim"] is None  # the claim taken for the decision was given back
    done = shop.decide(sid, "correct", "counted two", staff="cal", corrected_quantity=2)
    assert (done["correction"]["quantity_before"], done["correction"]["quantity_after"]) == (0, 2)
    assert lines(shop.cart(sid)) == {"BREAD": 2, "WATER": 1}
    # A replay answers with the stored outcome; another quantity is another decision.
    again = shop.decide(sid, "correct", "counted two", staff="cal", corrected_quantity=2)
    assert again["correction"] == done["correction"] and again["flags"] == done["flags"]
    other = shop.client.post(f"/staff/sessions/{sid}/flags/resolve", json={
        "staff_id": "cal", "device_id": "shelf-1", "device_seq": 1, "decision": "correct",
        "corrected_quantity": 3, "note": "counted two"})
    assert "as correct to 2" in reason_of(other, 409)
    assert lines(shop.cart(sid)) == {"BREAD": 2, "WATER": 1}


def test_a_replay_returns_the_same_result_and_another_decision_is_409(shop: Shop) -> None:
    sid = shop.flagged_session()
    first = shop.decide(sid, "accept")
    again = shop.decide(sid, "accept")
    assert {k: v for k, v in again.items() if k != "cart"} == {
        k: v for k, v in first.items() if k != "cart"}
    assert lines(again["cart"]) == {"BREAD": 1, "WATER": 1}
    assert len(shop.cart(sid)["corrections"]) == 1
    for decision, note in [("reject", "ok, checked"), ("accept", "another note")]:
        r = shop.client.post(f"/staff/sessions/{sid}/flags/resolve", json={
            "staff_id": "bob", "device_id": "shelf-1", "device_seq": 1,
            "decision": decision, "note": note})
        reason = reason_of(r, 409)
        assert "already resolved by staff ann" in reason and "as accept" in reason
    assert lines(shop.cart(sid)) == {"BREAD": 1, "WATER": 1}
    assert len(shop.cart(sid)["corrections"]) == 1
    shop.close_by_cash(sid)
    after_close = shop.decide(sid, "accept")  # a retry of a lost answer, after the close
    assert after_close["correction"] == first["correction"]
    assert after_close["flags"] == first["flags"] and after_close["cart"]["status"] == "settled"


def test_refused_while_the_shopper_shops_or_another_member_holds_the_claim(
        shop: Shop) -> None:
    live = shop.flagged_session(exit_=False)
    reason = reason_of(shop.client.post(f"/staff/sessions/{live}/flags/resolve", json={
        "staff_id": "ann", "device_id": "shelf-1", "device_seq": 1, "decision": "accept",
        "note": "ok"}), 409)
    assert "decided at the staffed checkout" in reason
    sid = shop.flagged_session()
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "bob"}, 200)
    assert "claimed by staff bob" in reason_of(shop.client.post(
        f"/staff/sessions/{sid}/flags/resolve", json={
            "staff_id": "ann", "device_id": "shelf-2", "device_seq": 1, "decision": "accept",
            "note": "ok"}), 409)
    assert lines(shop.cart(sid)) == {"WATER": 1}
    done = shop.decide(sid, "accept", staff="bob")  # the holder decides and keeps the claim
    assert done["cart"]["claim"]["staff_id"] == "bob"
    assert lines(done["cart"]) == {"BREAD": 1, "WATER": 1}
