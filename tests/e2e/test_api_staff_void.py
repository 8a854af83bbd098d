"""Voiding a staffed-checkout tender over HTTP: a manager voids a cashier's cash tender
(the X report expects less cash), the lines unlock for a correction, a card tender is
refunded once however often the void is sent, and cashiers, unknown tenders and closed
sales are refused. Money is integer minor units."""

from __future__ import annotations

from test_api_staff_checkout import Shop, error, shop  # noqa: F401 - the fixture

VOID = "/staff/sessions/{sid}/tenders/{tid}/void"


def test_a_manager_voids_tenders_and_the_sale_is_corrected(shop: Shop) -> None:  # noqa: F811
    shop.client.auth.roles["cat"] = "cashier"  # type: ignore[union-attr]
    sid = shop.staffed_session({"WATER": 2, "APPLE-1": 1})  # 2.25 GBP
    shop.post("/staff/tills/till-1/open", {"staff_id": "cat", "float_minor": 5000}, 201)
    shop.post(f"/staff/sessions/{sid}/claim", {"staff_id": "cat"}, 200)
    cash = shop.post(f"/staff/sessions/{sid}/tenders", {
        "staff_id": "cat", "kind": "cash", "key": "c1", "till_id": "till-1",
        "amount_minor": 100}, 201)["tender"]
    card = shop.post(f"/staff/sessions/{sid}/tenders", {
        "staff_id": "cat", "kind": "card", "key": "k1", "till_id": "till-1",
        "amount_minor": 125, "payment_token": "tok_till_card"}, 201)["tender"]
    fix = {"staff_id": "cat", "product_code": "WATER", "quantity": 1, "reason": "put back"}
    assert "void the tenders" in error(
        shop.client.post(f"/staff/sessions/{sid}/corrections", json=fix), 409)

    body = {"staff_id": "cat", "reason": "shopper cannot pay for the second water"}
    error(shop.client.post(VOID.format(sid=sid, tid=cash["id"]), json=body), 403)  # cashier
    manager = body | {"staff_id": "max"}
    error(shop.client.post(VOID.format(sid=sid, tid=cash["id"]),
                           json=manager | {"reason": ""}), 422)
    error(shop.client.post(VOID.format(sid=sid, tid="tnd_unknown"), json=manager), 404)
    got = shop.post(VOID.format(sid=sid, tid=cash["id"]), manager, 200)
    assert (got["tender"]["state"], got["tender"]["voided_by"],
            got["balance_due_minor"]) == ("voided", "max", 100)
    assert shop.post(VOID.format(sid=sid, tid=cash["id"]), manager, 200) == got  # a replay
    x = shop.client.get("/staff/tills/till-1/x-report").json()
    assert (x["cash_voids_minor"], x["expected_cash_minor"]) == (100, 5000)

    voided = shop.post(VOID.format(sid=sid, tid=card["id"]), manager, 200)
    assert voided["tender"]["void_refund_id"] and voided["balance_due_minor"] == 225
    assert shop.post(VOID.format(sid=sid, tid=card["id"]), manager, 200) == voided
    assert shop.processor.inner.lookup(kind="refund", idempotency_key=f"void:{card['id']}",
                                       reference=None).amount_minor == 125

    assert shop.post(f"/staff/sessions/{sid}/corrections", fix, 201)["cart"][
        "total_minor"] == 95 + 35
    assert "balance due" in error(
        shop.client.post(f"/staff/sessions/{sid}/close", json={"staff_id": "cat"}), 409)
    paid = shop.post(f"/staff/sessions/{sid}/tenders", {
        "staff_id": "cat", "kind": "cash", "key": "c2", "till_id": "till-1",
        "amount_minor": 200}, 201)["tender"]
    closed = shop.post(f"/staff/sessions/{sid}/close", {"staff_id": "cat"}, 200)
    assert (closed["total_minor"], closed["paid_minor"], closed["change_minor"]) == (130, 130,
                                                                                    70)
    receipt = shop.client.get(f"/receipts/{closed['receipt_id']}").json()
    assert [(p["kind"], p["amount_minor"]) for p in receipt["payments"]] == [("cash", 130)]
    assert "settled" in error(shop.client.post(VOID.format(sid=sid, tid=paid["id"]),
                                               json=manager), 409)
    after = shop.post(VOID.format(sid=sid, tid=card["id"]), manager, 200)
    assert (after["tender"], after["balance_due_minor"]) == (voided["tender"], 0)
