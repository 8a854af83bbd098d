"""Hostile input found by a newcomer's review: each is a 4xx with a reason, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cart.errors import ConcurrencyConflict
from storefront.api.errors import status_for


@pytest.fixture
def store(make_store: Any) -> Any:
    s = make_store()
    s.add_products()
    return s


def _open_session(store: Any) -> str:
    shopper = store.register("Dana")
    return str(store.container.gates.open_session(shopper_id=shopper, entry_method="app"))


@pytest.mark.parametrize("field", ["quantity", "device_seq"])
@pytest.mark.parametrize("value", ["2", True, 2.0])
def test_counts_are_not_coerced(store: Any, field: str, value: object) -> None:
    session_id = _open_session(store)
    body = store.event("picked", "APPLE-1", 1, "cart-9", 1, 1)
    body[field] = value
    store.error_of(store.send(session_id, body), 422)
    assert store.cart(session_id) == {}


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                   "1999-12-31T23:00:00+00:00"])
def test_times_out_of_range_are_refused(store: Any, stamp: str) -> None:
    session_id = _open_session(store)
    body = store.event("picked", "APPLE-1", 1, "cart-9", 1, 1)
    body["sensor_time"] = stamp
    store.error_of(store.send(session_id, body), 422)


def test_device_clock_far_ahead_is_refused(store: Any) -> None:
    session_id = _open_session(store)
    body = store.event("picked", "APPLE-1", 1, "cart-9", 1, 1)
    body["sensor_time"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    reason = store.error_of(store.send(session_id, body), 422)["reason"]
    assert "ahead" in reason


@pytest.mark.parametrize("body", [
    {"display_name": "a\u0000b", "payment_token": "tok_nul"},
    {"display_name": "Ok", "payment_token": "tok\u0000x"},
    {"display_name": "Ok", "payment_token": "4111 1111 1111 1111"},
    {"display_name": "Ok", "payment_token": "4111-1111-1111-1112"},
    {"display_name": "Ok", "payment_token": "card 4111111111111111"},
])
def test_control_characters_and_card_numbers_refused(store: Any, body: dict[str, str]) -> None:
    store.error_of(store.client.post("/shoppers", json=body), 422)


def test_product_name_with_nul_refused_and_strict_price(store: Any) -> None:
    r = store.client.put("/products/NUL1", json={"code": "NUL1", "name": "a\u0000b",
                                                "unit_price_minor": 100})
    store.error_of(r, 422)
    r = store.client.put("/products/STR1", json={"code": "STR1", "name": "ok",
                                                "unit_price_minor": "199"})
    store.error_of(r, 422)
    assert store.client.get("/products/STR1").status_code == 404


@pytest.mark.parametrize("path", ["/sessions/a%00b", "/sessions/" + "x" * 500,
                                  "/shoppers/..%2F..%2Fetc", "/products/" + "9" * 40])
def test_bad_ids_in_paths_are_refused_briefly(store: Any, path: str) -> None:
    r = store.client.get(path)
    assert r.status_code in (404, 422), r.text
    assert len(r.text) < 400


def test_version_conflicts_are_transient_503_not_409() -> None:
    assert status_for(ConcurrencyConflict("s", 1, 2)) == 503


def test_unknown_routes_and_methods_use_the_error_shape(store: Any) -> None:
    store.error_of(store.client.get("/no/such/route"), 404)
    store.error_of(store.client.delete("/checkout/staffed"), 405)


@pytest.mark.parametrize("stamp", [1700000000, "1700000000", "2026-03-02T09:00:00"])
def test_sensor_time_must_be_iso_text_with_an_offset(store: Any, stamp: object) -> None:
    session_id = _open_session(store)
    body = store.event("picked", "APPLE-1", 1, "cart-9", 1, 1)
    body["sensor_time"] = stamp
    store.error_of(store.send(session_id, body), 422)
    assert store.cart(session_id) == {}


def test_low_confidence_event_goes_to_review_not_to_the_bill(store: Any) -> None:
    session_id = _open_session(store)
    assert store.send(session_id, store.event("picked", "APPLE-1", 3, "cart-9", 1, 1,
                                              confidence=0.1)).status_code == 201
    result = store.client.post(f"/sessions/{session_id}/exit").json()
    assert result["status"] == "staffed" and "low_confidence" in result["reason"]
    assert store.processor.captured_total() == 0


def test_creating_shoppers_needs_staff(store: Any) -> None:
    r = store.client.post("/shoppers", json={"display_name": "Mallory",
                                             "payment_token": "tok_m"}, auth=None)
    store.error_of(r, 401)


def test_http_errors_carry_specific_codes(store: Any) -> None:
    assert store.error_of(store.client.get("/no/such/route"), 404)["error"] == "not_found"
    r = store.client.get("/checkout/staffed", auth=None)
    assert store.error_of(r, 401)["error"] == "unauthenticated"
