"""The staffed checkout end to end over HTTP: queue, claim, corrections, age check,
flags, tenders (cash with change, split cash + card), close, and the till's X/Z reports.

Sessions reach the staffed checkout through the real exit flow: the card on file is
refused by the issuer (a test double around the simulated processor), or an event is
flagged, or the cart holds an age-restricted product.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from card_refused import CardRefused
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

PRODUCTS = {"WATER": ("Sparkling water 1l", 95), "APPLE-1": ("Apple, each", 35),
            "COFFEE.250": ("Ground coffee 250g", 425)}


@dataclass
class Shop:
    client: TestClient
    container: Container
    processor: CardRefused
    shoppers: int = 0

    def staffed_session(self, items: dict[str, int], *, refuse: bool = True,
                        odd_put_back: str | None = None) -> str:
        """A session whose exit went to the staffed checkout; returns its id."""
        self.shoppers += 1
        token = f"tok_shopper_{'x' * self.shoppers}"
        r = self.client.post("/shoppers", json={"display_name": "Dana", "payment_token": token})
        assert r.status_code == 201, r.text
        session_id = self.container.gates.open_session(shopper_id=r.json()["id"],
                                                       entry_method="palm")
        now = datetime.now(UTC) - timedelta(seconds=30)
        for seq, (code, qty) in enumerate(items.items()):
            self._event(session_id, "picked", code, qty, seq, now)
        if odd_put_back:  # a put-back of something never picked: flagged for review
            self._event(session_id, "put_back", odd_put_back, 1, 99, now)
        if refuse:
            self.processor.refused.add(token)
        r = self.client.post(f"/sessions/{session_id}/exit")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "staffed", r.json()
        return session_id

    def _event(self, session_id: str, kind: str, code: str, qty: int, seq: int,
               at: datetime) -> None:
        r = self.client.post(f"/sessions/{session_id}/events", json={
            "kind": kind, "product_code": code, "quantity": qty, "device_id": "shelf-1",
            "device_seq": seq, "sensor_time": (at + timedelta(seconds=seq)).isoformat()})
        assert r.status_code == 201, r.text

    def post(self, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        assert r.status_code == status, r.text
        return r.json() if r.content else {}

    def cart(self, session_id: str) -> dict[str, Any]:
        r = self.client.get(f"/staff/sessions/{session_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    processor = CardRefused(SimulatedProcessor(seed=7, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path / "store"), processor=processor)  # type: ignore[arg-type]
    container.catalogue.upsert([make_item(code, name, price, "GBP")
                                for code, (name, price) in PRODUCTS.items()])
    container.catalogue.upsert([make_item("WINE-75", "Red wine 75cl", 899, "GBP",
                                          age_restricted=True)])
    with authenticated(TestClient(create_app(container)), container.security,
                           container.settings.store_id) as client:
        yield Shop(client, container, processor)
    container.close()


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "reason"} and len(body["reason"]) > 5, body
    return str(body["reason"])


def test_declined_session_settled_by_cash_with_change(shop: Shop) -> None:
    sid = shop.staffed_session({"WATER": 2, "APPLE-1": 1})
    queue = shop.client.get("/staff/queue").json()
    assert [e["session_id"] for e in queue] == [sid] and "refused" in queue[0]["reason"]
    shop.post("/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 5000}, 201)
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ann"}, 200)
    cart = shop.cart(sid)
    assert cart["total_minor"] == 2 * 95 + 35 and cart["balance_due_minor"] == 225
    assert cart["blockers"] == ["balance due 2.25 GBP"] and not cart["can_close"]
    got = shop.post(f"/staff/sessions/{sid}/tenders", {
        "staff_id": "ann", "kind": "cash", "key": "t1", "till_id": "till-1",
        "amount_minor": 500}, 201)
    assert got["tender"]["amount_minor"] == 225 and got["tender"]["change_minor"] == 275
    assert got["balance_due_minor"] == 0
    closed = shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "ann"}, 200)
    assert closed["total_minor"] == 225 and closed["change_minor"] == 275
    receipt = shop.client.get(f"/receipts/{closed['receipt_id']}").json()
    assert receipt["total_minor"] == 225
    assert receipt["payments"] == [{"kind": "cash", "amount_minor": 225, "tendered_minor": 500,
                                    "change_minor": 275, "reference": None}]
    assert shop.client.get(f"/sessions/{sid}").json()["status"] == "settled"
    assert shop.client.get("/staff/queue").json() == []
    assert shop.container.carts.state(sid).receipt_id == closed["receipt_id"]
    # Closing again is a harmless retry; the session is no longer workable.
    assert shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "ann"}, 200) == closed
    x = shop.client.get("/staff/tills/till-1/x-report").json()
    assert (x["kind"], x["cash_sales_minor"], x["cash_tendered_minor"],
            x["change_given_minor"], x["expected_cash_minor"]) == ("X", 225, 500, 275, 5225)
    z = shop.post("/staff/tills/till-1/z-report", {"staff_id": "ann", "counted_minor": 5200}, 200)
    assert (z["kind"], z["expected_cash_minor"], z["counted_minor"],
            z["difference_minor"]) == ("Z", 5225, 5200, -25)
    error(shop.client.get("/staff/tills/till-1/x-report"), 404)  # the drawer is closed


def test_split_tender_cash_then_card_never_over_collects(shop: Shop) -> None:
    sid = shop.staffed_session({"COFFEE.250": 1, "WATER": 1})
    shop.post("/staff/tills/till-2/open", {"staff_id": "ben", "float_minor": 0}, 201)
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ben"}, 200)
    cash = {"staff_id": "ben", "kind": "cash", "key": "c1", "till_id": "till-2",
            "amount_minor": 200}
    assert shop.post(f"/staff/sessions/{sid}/tenders", cash, 201)["balance_due_minor"] == 320
    card = {"staff_id": "ben", "kind": "card", "key": "k1", "till_id": "till-2",
            "payment_token": "tok_till_card"}
    before = shop.cart(sid)
    reason = error(shop.client.post(f"/staff/sessions/{sid}/tenders",
                                    json=card | {"amount_minor": 321}), 422)
    assert "more than the balance due 3.20 GBP" in reason
    assert shop.cart(sid) == before  # nothing changed
    got = shop.post(f"/staff/sessions/{sid}/tenders", card | {"amount_minor": 320}, 201)
    assert got["tender"]["state"] == "captured" and got["balance_due_minor"] == 0
    again = shop.post(f"/staff/sessions/{sid}/tenders", card | {"amount_minor": 320}, 201)
    assert again["tender"]["id"] == got["tender"]["id"]  # a retry, charged once
    assert shop.processor.captured_total() == 320
    error(shop.client.post(f"/staff/sessions/{sid}/tenders",
                           json=card | {"key": "k2", "amount_minor": 1}), 409)  # nothing due
    closed = shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "ben"}, 200)
    receipt = shop.client.get(f"/receipts/{closed['receipt_id']}").json()
    assert [(p["kind"], p["amount_minor"]) for p in receipt["payments"]] == [("cash", 200),
                                                                             ("card", 320)]
    x = shop.client.get("/staff/tills/till-2/x-report").json()
    assert (x["cash_sales_minor"], x["card_sales_minor"], x["tenders"]) == (200, 320, 2)


def test_age_check_required_and_confirmed(shop: Shop) -> None:
    sid = shop.staffed_session({"WINE-75": 1}, refuse=False)
    assert "age" in shop.client.get(f"/sessions/{sid}").json()["staffed_reason"]
    shop.post("/staff/tills/till-1/open", {"staff_id": "cat", "float_minor": 1000}, 201)
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "cat"}, 200)
    cart = shop.cart(sid)
    assert cart["age_check_required"] and cart["age_checked_by"] is None
    cash = {"staff_id": "cat", "kind": "cash", "key": "c1", "till_id": "till-1",
            "amount_minor": 1000}
    assert "age check" in error(shop.client.post(f"/staff/sessions/{sid}/tenders", json=cash),
                                409)
    assert "age check" in error(shop.client.post(f"/staff/sessions/{sid}/close",
                                                 json={"staff_id": "cat"}), 409)
    checked = shop.post(f"/staff/sessions/{sid}/age-check", {"staff_id": "cat"}, 200)
    assert checked["checked_by"] == "cat"
    assert datetime.fromisoformat(checked["checked_at"]).tzinfo is not None
    assert shop.post(f"/staff/sessions/{sid}/tenders", cash, 201)["tender"]["change_minor"] == 101
    assert shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "cat"}, 200)["total_minor"] == 899


def test_correction_with_reason_is_audited_and_flags_resolved(shop: Shop) -> None:
    sid = shop.staffed_session({"APPLE-1": 3}, refuse=False, odd_put_back="WATER")
    assert "review" in shop.client.get(f"/sessions/{sid}").json()["staffed_reason"]
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "dan"}, 200)
    cart = shop.cart(sid)
    assert [f["reason"] for f in cart["flags"]] == ["put_back_not_picked"]
    assert any("unresolved flag" in b for b in cart["blockers"])
    fix = {"staff_id": "dan", "product_code": "APPLE-1", "quantity": 2}
    error(shop.client.post(f"/staff/sessions/{sid}/corrections", json=fix), 422)
    error(shop.client.post(f"/staff/sessions/{sid}/corrections", json=fix | {"reason": " "}),
          422)
    assert shop.cart(sid)["corrections"] == []
    error(shop.client.post(f"/staff/sessions/{sid}/corrections",
                           json=fix | {"staff_id": "eve", "reason": "x"}), 409)  # not the claimer
    done = shop.post(f"/staff/sessions/{sid}/corrections",
                     fix | {"reason": "one apple was put back on the wrong shelf"}, 201)
    audit = done["correction"]
    assert (audit["staff_id"], audit["product_code"], audit["quantity_before"],
            audit["quantity_after"]) == ("dan", "APPLE-1", 3, 2)
    assert audit["reason"].startswith("one apple") and audit["corrected_at"]
    shop.post(f"/staff/sessions/{sid}/corrections", {
        "staff_id": "dan", "product_code": "WATER", "quantity": 1,
        "reason": "the water said to be put back is in the basket"}, 201)
    done = shop.post(f"/staff/sessions/{sid}/flags/resolve", {
        "staff_id": "dan", "device_id": "shelf-1", "device_seq": 99, "decision": "accept",
        "note": "checked the basket"}, 200)
    flags = done["flags"]
    assert flags[0]["resolved_by"] == "dan" and flags[0]["note"] == "accept: checked the basket"
    assert done["correction"] is None  # the water was already corrected to 1
    cart = shop.cart(sid)
    assert cart["total_minor"] == 2 * 35 + 95 and len(cart["corrections"]) == 2
    shop.post("/staff/tills/till-9/open", {"staff_id": "dan", "float_minor": 0}, 201)
    shop.post(f"/staff/sessions/{sid}/tenders", {"staff_id": "dan", "kind": "cash", "key": "a",
                                                  "till_id": "till-9", "amount_minor": 165}, 201)
    assert "locked" in error(shop.client.post(f"/staff/sessions/{sid}/corrections", json=fix | {
        "quantity": 1, "reason": "too late"}), 409)
    receipt_id = shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "dan"}, 200)["receipt_id"]
    lines = shop.client.get(f"/receipts/{receipt_id}").json()["lines"]
    assert [(line["code"], line["quantity"]) for line in lines] == [("APPLE-1", 2), ("WATER", 1)]


def test_claim_conflict_is_409_until_released(shop: Shop) -> None:
    sid = shop.staffed_session({"WATER": 1})
    claim = shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ann"}, 200)
    assert claim["staff_id"] == "ann" and claim["expires_at"] > claim["claimed_at"]
    assert "claimed by staff ann" in error(shop.client.post(
        f"/staff/sessions/{sid}/claim", json={"staff_id": "bob"}), 409)
    assert shop.client.get("/staff/queue").json()[0]["claim"]["staff_id"] == "ann"
    error(shop.client.post(f"/staff/sessions/{sid}/release", json={"staff_id": "bob"}), 409)
    shop.post(f"/staff/sessions/{sid}/release", {"staff_id": "ann"}, 204)
    assert shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "bob"}, 200)["staff_id"] == "bob"


def test_malformed_input_is_refused_and_changes_nothing(shop: Shop) -> None:
    sid = shop.staffed_session({"WATER": 1})
    shop.post("/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 100}, 201)
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "ann"}, 200)
    before = shop.cart(sid)
    x_before = shop.client.get("/staff/tills/till-1/x-report").json()
    tender = {"staff_id": "ann", "kind": "cash", "key": "t", "till_id": "till-1"}
    bad: list[tuple[str, dict[str, Any], int]] = [
        (f"/staff/sessions/{sid}/tenders", tender | {"amount_minor": -5}, 422),
        (f"/staff/sessions/{sid}/tenders", tender | {"amount_minor": 0}, 422),
        (f"/staff/sessions/{sid}/tenders", tender | {"amount_minor": "5"}, 422),
        (f"/staff/sessions/{sid}/tenders", tender | {"amount_minor": 50, "till_id": "nope"}, 409),
        (f"/staff/sessions/{sid}/tenders", tender | {"kind": "card", "amount_minor": 96}, 422),
        (f"/staff/sessions/{sid}/tenders", tender | {
            "kind": "card", "amount_minor": 95, "payment_token": "4242424242424242"}, 422),
        (f"/staff/sessions/{sid}/tenders", tender | {"amount_minor": 50, "staff_id": "a b"}, 422),
        ("/staff/sessions/ses_unknown/tenders", tender | {"amount_minor": 50}, 404),
        ("/staff/sessions/ses_unknown/claim", {"staff_id": "ann"}, 404),
        (f"/staff/sessions/{sid}/close", {"staff_id": "ann"}, 409),  # balance due
        (f"/staff/sessions/{sid}/corrections", {"staff_id": "ann", "product_code": "WATER",
                                                "quantity": -1, "reason": "x"}, 422),
        (f"/staff/sessions/{sid}/corrections", {"staff_id": "ann", "product_code": "NOPE",
                                                "quantity": 1, "reason": "typo"}, 422),
        (f"/staff/sessions/{sid}/flags/resolve", {"staff_id": "ann", "device_id": "d",
                                                  "device_seq": 1, "decision": "accept",
                                                  "note": "n"}, 404),
        ("/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 10}, 409),
        ("/staff/tills/till-3/open", {"staff_id": "ann", "float_minor": -1}, 422),
        ("/staff/tills/till-1/z-report", {"staff_id": "ann", "counted_minor": -1}, 422),
    ]
    for path, body, status in bad:
        error(shop.client.post(path, json=body), status)
    error(shop.client.get("/staff/sessions/ses_unknown"), 404)
    assert "balance due 0.95 GBP" in error(shop.client.post(f"/staff/sessions/{sid}/close",
                                                      json={"staff_id": "ann"}), 409)
    assert shop.cart(sid) == before
    assert shop.client.get("/staff/tills/till-1/x-report").json() == x_before
    assert shop.client.get(f"/sessions/{sid}").json()["status"] == "staffed"
