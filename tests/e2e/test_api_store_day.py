"""The demo's store day, through HTTP, on synthetic palms.

Shoppers register and enrol, enter by palm, shop with replayed and out-of-order events,
and exit; paid with the hand-computed total, or (all cards declined) queued at the
staffed checkout without ever being charged, however often the exit is retried.
"""

from __future__ import annotations

from typing import Any

import pytest

from storefront.db.models import ShoppingSession

# Each shopper's trip: (events in *arrival* order, expected cart). Prices (minor units):
# water 95, biscuits 149, apple 35, coffee 425.
WATER, BISCUITS, APPLE, COFFEE = "5000112637922", "5010029000016", "APPLE-1", "COFFEE.250"


def _trips(store: Any) -> list[tuple[list[dict[str, Any]], dict[str, int], int]]:
    e = store.event
    return [
        # Ada: plain picks and one put-back in order. 2 water + 1 coffee = 190 + 425.
        ([e("picked", WATER, 3, "cart-a", 1, 10), e("picked", COFFEE, 1, "cart-a", 2, 20),
          e("put_back", WATER, 1, "cart-a", 3, 30)],
         {WATER: 2, COFFEE: 1}, 2 * 95 + 425),
        # Ben: the put-back of an apple arrives before its pick (sensor time 50 > 40).
        # 4 apples picked, 1 put back, 1 biscuits = 3*35 + 149.
        ([e("put_back", APPLE, 1, "cart-b", 2, 50), e("picked", APPLE, 4, "cart-b", 1, 40),
          e("picked", BISCUITS, 1, "shelf-7", 900, 45)],
         {APPLE: 3, BISCUITS: 1}, 3 * 35 + 149),
        # Cy: a whole put-back of coffee (line disappears), out of order too.
        ([e("picked", BISCUITS, 2, "cart-c", 1, 5), e("put_back", COFFEE, 1, "cart-c", 3, 15),
          e("picked", COFFEE, 1, "cart-c", 2, 12)],
         {BISCUITS: 2}, 2 * 149),
        # Di: several devices, one line.
        ([e("picked", WATER, 1, "shelf-1", 77, 3), e("picked", WATER, 1, "cart-d", 1, 4),
          e("picked", APPLE, 2, "cart-d", 2, 6)],
         {WATER: 2, APPLE: 2}, 2 * 95 + 2 * 35),
    ]


NAMES = ("Ada", "Ben", "Cy", "Di")


def _shop(store: Any) -> list[tuple[str, str, dict[str, int], int]]:
    """Register, enrol, enter and shop for each shopper -> (shopper, session, cart, total)."""
    store.add_products()
    shoppers = [store.register(name) for name in NAMES]
    for palm, shopper in enumerate(shoppers):
        enrolment = store.enrol(shopper, palm)
        assert enrolment["shopper_id"] == shopper
        assert len(enrolment["captures"]) == 5

    visits = []
    for palm, (shopper, (events, cart, total)) in enumerate(zip(shoppers, _trips(store),
                                                                strict=True)):
        entry = store.enter(store.palm_png(palm, store.PROBE_CAPTURE))
        assert entry["admitted"] is True, entry
        assert entry["outcome"] == "identified"
        assert entry["shopper_id"] == shopper
        session_id = entry["session_id"]
        assert session_id
        view = store.session(session_id)
        assert view["status"] == "open" and view["shopper_id"] == shopper
        assert view["entry_method"] == "palm" and view["cart"] == []

        for body in events:
            r = store.send(session_id, body)
            assert r.status_code == 201, r.text
            assert r.json()["session_id"] == session_id

        # One replay of the first event (a lossy network's duplicate): 409, cart unchanged.
        before = store.cart(session_id)
        store.error_of(store.send(session_id, events[0]), 409)
        assert store.cart(session_id) == before == cart
        assert store.session(session_id)["flags"] == []
        visits.append((shopper, session_id, cart, total))
    return visits


def test_store_day_all_paid_with_hand_computed_totals(make_store: Any) -> None:
    store = make_store(decline_rate=0.0)
    visits = _shop(store)

    expected_total = 0
    for _shopper, session_id, cart, total in visits:
        r = store.client.post(f"/sessions/{session_id}/exit")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "paid", out
        assert out["total_minor"] == total
        assert out["currency"] == "GBP"
        assert out["receipt_id"] and out["reason"] is None
        assert {line["code"]: line["quantity"] for line in out["lines"]} == cart
        assert sum(line["line_total_minor"] for line in out["lines"]) == total
        assert store.session(session_id)["status"] == "settled"
        assert store.session(session_id)["total_minor"] == total
        expected_total += total

    assert store.processor.captured_total() == expected_total == 615 + 254 + 298 + 260
    assert store.client.get("/checkout/staffed").json() == []

    # Exiting again returns the same receipt and charges nothing more.
    _shopper, session_id, _cart, total = visits[0]
    first_receipt = store.client.post(f"/sessions/{session_id}/exit").json()
    again = store.client.post(f"/sessions/{session_id}/exit").json()
    assert again == first_receipt and again["total_minor"] == total
    assert store.processor.captured_total() == expected_total

    # A closed session takes no more events.
    store.error_of(store.send(session_id, store.event("picked", WATER, 1, "cart-z", 1, 99)), 409)


def test_store_day_all_declined_go_to_staffed_checkout_once(make_store: Any) -> None:
    store = make_store(decline_rate=1.0)
    visits = _shop(store)

    outcomes = {}
    for _shopper, session_id, _cart, total in visits:
        out = store.client.post(f"/sessions/{session_id}/exit").json()
        assert out["status"] == "staffed", out
        assert out["receipt_id"] is None
        assert "declined" in out["reason"]
        assert out["total_minor"] == total
        outcomes[session_id] = out

    queue = store.client.get("/checkout/staffed")
    assert queue.status_code == 200
    queued = {row["id"]: row for row in queue.json()}
    assert set(queued) == {session_id for _, session_id, _, _ in visits}
    for _shopper, session_id, _cart, total in visits:
        assert queued[session_id]["status"] == "staffed"
        assert "declined" in str(queued[session_id]["staffed_reason"])
        assert queued[session_id]["total_minor"] == total

    # Retried exits: the same outcome, no charge, the queue unchanged.
    for session_id, first in outcomes.items():
        r = store.client.post(f"/sessions/{session_id}/exit")
        assert r.status_code == 200
        again = r.json()
        assert (again["status"], again["reason"], again["total_minor"], again["receipt_id"]) == (
            first["status"], first["reason"], first["total_minor"], first["receipt_id"])
    assert store.processor.captured_total() == 0
    assert len(store.client.get("/checkout/staffed").json()) == len(visits)


@pytest.mark.parametrize("palm", [17, 18])
def test_palm_never_enrolled_is_refused(make_store: Any, palm: int) -> None:
    store = make_store()
    store.add_products()
    for i, name in enumerate(NAMES[:3]):
        store.enrol(store.register(name), i)
    entry = store.enter(store.palm_png(palm, store.PROBE_CAPTURE))
    assert entry["admitted"] is False
    assert entry["outcome"] in ("not_identified", "ambiguous")
    assert entry["reason"] and entry["reason"] != "welcome"
    assert entry["session_id"] is None and entry["shopper_id"] is None
    # No session was opened by the refusal.
    with store.container.db() as db:
        assert db.query(ShoppingSession).count() == 0
