"""Staff views of settled sessions over HTTP (SQLite only: they read what the exit and the
staffed checkout wrote, whose PostgreSQL behaviour is tested elsewhere).

A session paid by card at the exit, or closed at the staffed checkout, is shown as its
receipt (never repriced from today's catalogue) with what was paid and no balance due.
After the shopper deletes their account, the kept session row still answers staff (not
404) with its status, totals and receipt, saying that the item history was erased, and
nothing erased (the shopper's id, name, e-mail, devices, cart events) reappears.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import build_privacy
from storefront.security.client import authenticated
from storefront.settings import Settings

PASSWORD = "correct horse battery staple"


class Shop:
    """A store over HTTP with TEA at 1.50 GBP and JAM at 2.25 GBP."""

    def __init__(self, client: TestClient, container: Container,
                 processor: SimulatedProcessor) -> None:
        self.client, self.container, self.processor = client, container, processor

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, json=body, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def price(self, code: str, minor: int) -> None:
        self.call("PUT", f"/products/{code}", {"code": code, "name": code.title(),
                                                "unit_price_minor": minor})

    def trip(self, shopper_id: str, picks: dict[str, int], device: str = "cart-7") -> str:
        sid = self.container.gates.open_session(shopper_id=shopper_id, entry_method="palm")
        at = datetime.now(UTC) - timedelta(seconds=30)
        for seq, (code, qty) in enumerate(sorted(picks.items())):
            self.call("POST", f"/sessions/{sid}/events", {
                "kind": "picked", "product_code": code, "quantity": qty, "device_id": device,
                "device_seq": seq, "sensor_time": (at + timedelta(seconds=seq)).isoformat()},
                201)
        return sid

    def shopper(self, name: str) -> str:
        return str(self.call("POST", "/shoppers", {"display_name": name,
                                                   "payment_token": f"tok_{name}"}, 201)["id"])


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    processor = SimulatedProcessor(seed=11, decline_rate=0.0)
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=None),
                          processor=processor)
    app = create_app(container)
    app.state.privacy = build_privacy(container, hasher=PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1))
    with authenticated(TestClient(app), container.security,
                       container.settings.store_id) as client:
        shop = Shop(client, container, processor)
        shop.price("TEA", 150)
        shop.price("JAM", 225)
        yield shop
    container.close()


def _assert_closed_view(cart: dict[str, Any], receipt: dict[str, Any], paid: int) -> None:
    assert cart["status"] == "settled" and cart["receipt_id"] == receipt["id"]
    # The stored receipt lines (the API's receipt shows them without the tax stamps).
    assert [{k: line[k] for k in shown} for line, shown in zip(
        cart["lines"], receipt["lines"], strict=True)] == receipt["lines"]
    assert cart["total_minor"] == receipt["total_minor"]
    assert (cart["paid_minor"], cart["balance_due_minor"]) == (paid, receipt["total_minor"] - paid)
    assert cart["balance_due_minor"] == 0 and cart["blockers"] == [] and cart["issues"] == []
    assert cart["can_close"] is False  # closed already


def test_a_session_paid_at_the_exit_shows_its_receipt_and_the_card_capture(shop: Shop) -> None:
    sid = shop.trip(shop.shopper("Dana"), {"TEA": 2, "JAM": 1})
    out = shop.call("POST", f"/sessions/{sid}/exit")
    assert (out["status"], out["total_minor"]) == ("paid", 525)
    shop.price("TEA", 999)  # today's price differs from the receipt's
    cart = shop.call("GET", f"/staff/sessions/{sid}")
    receipt = shop.call("GET", f"/receipts/{out['receipt_id']}")
    _assert_closed_view(cart, receipt, 525)
    assert (cart["paid_at_exit_minor"], cart["tenders"], cart["frozen"]) == (525, [], True)
    assert cart["history_erased"] is False and out["receipt_id"] in cart["notice"]
    tea = next(line for line in cart["lines"] if line["code"] == "TEA")
    assert tea["unit_price_minor"] == 150  # priced as its receipt, not at 9.99
    session = shop.call("GET", f"/sessions/{sid}")
    assert (session["receipt_id"], session["history_erased"], session["notice"]) == (
        out["receipt_id"], False, None)
    assert {line["product_code"]: line["quantity"] for line in session["cart"]} == {
        "TEA": 2, "JAM": 1}


def test_an_empty_cart_settled_at_the_exit_owes_nothing(shop: Shop) -> None:
    sid = shop.trip(shop.shopper("Eli"), {})
    out = shop.call("POST", f"/sessions/{sid}/exit")
    assert (out["status"], out["total_minor"]) == ("paid", 0)
    cart = shop.call("GET", f"/staff/sessions/{sid}")
    assert (cart["total_minor"], cart["paid_minor"], cart["balance_due_minor"],
            cart["blockers"], cart["lines"]) == (0, 0, 0, [], [])


def test_a_sale_closed_at_the_till_shows_its_tenders_not_todays_prices(shop: Shop) -> None:
    shopper = shop.shopper("Gil")
    sid = shop.trip(shopper, {"JAM": 2})
    shop.container.carts.close_at_exit(sid)
    shop.container.carts.send_to_staffed(sid, "payment declined (test)")
    shop.container.read_model.update(sid, status="staffed",
                                     staffed_reason="payment declined (test)")
    shop.call("POST", "/staff/tills/till-1/open", {"staff_id": "ann", "float_minor": 0}, 201)
    shop.call("POST", f"/staff/sessions/{sid}/claim", {"staff_id": "ann"})
    shop.call("POST", f"/staff/sessions/{sid}/tenders", {
        "staff_id": "ann", "kind": "cash", "key": "c1", "till_id": "till-1",
        "amount_minor": 500}, 201)
    closed = shop.call("POST", f"/staff/sessions/{sid}/close", {"staff_id": "ann"})
    shop.price("JAM", 100)
    cart = shop.call("GET", f"/staff/sessions/{sid}")
    receipt = shop.call("GET", f"/receipts/{closed['receipt_id']}")
    _assert_closed_view(cart, receipt, 450)
    assert cart["paid_at_exit_minor"] == 0 and cart["reason"] == "payment declined (test)"
    assert [(t["kind"], t["amount_minor"], t["change_minor"]) for t in cart["tenders"]] == [
        ("cash", 450, 50)]


def test_staff_still_see_a_session_kept_after_account_deletion(shop: Shop) -> None:
    signup = shop.call("POST", "/auth/signup", {
        "email": "hila@example.org", "password": PASSWORD, "display_name": "Hila Private",
        "payment_token": "tok_hila"}, 201)
    shopper = signup["shopper_id"]
    token = shop.call("POST", "/auth/login", {"email": "hila@example.org",
                                              "password": PASSWORD})["token"]
    me = {"Authorization": f"Bearer {token}"}
    sid = shop.trip(shopper, {"TEA": 3}, device="cart-hila")
    out = shop.call("POST", f"/sessions/{sid}/exit")
    assert (out["status"], out["total_minor"]) == ("paid", 450)
    shop.call("DELETE", "/me", headers=me)

    session = shop.call("GET", f"/sessions/{sid}")
    assert (session["status"], session["total_minor"], session["receipt_id"]) == (
        "settled", 450, out["receipt_id"])
    assert session["history_erased"] is True and "erased" in session["notice"]
    assert session["cart"] == [] and session["flags"] == []
    assert session["shopper_id"].startswith("erased_")

    cart = shop.call("GET", f"/staff/sessions/{sid}")
    receipt = shop.call("GET", f"/receipts/{out['receipt_id']}")
    _assert_closed_view(cart, receipt, 450)
    assert cart["history_erased"] is True and "erased" in cart["notice"]
    assert (cart["flags"], cart["corrections"], cart["age_checked_by"]) == ([], [], None)
    assert cart["shopper_id"] == session["shopper_id"]

    for path in (f"/sessions/{sid}", f"/staff/sessions/{sid}"):
        text = shop.client.get(path).text
        for erased in (shopper, "Hila", "hila@example.org", "tok_hila", "cart-hila"):
            assert erased not in text, (path, erased)


def test_unknown_sessions_are_still_404(shop: Shop) -> None:
    for path in ("/sessions/ses_nope", "/staff/sessions/ses_nope"):
        assert shop.client.get(path).status_code == 404
