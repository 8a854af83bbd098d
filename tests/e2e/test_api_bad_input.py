"""Bad requests get a clear 4xx JSON error with a reason, and nothing is stored twice or lost."""

from __future__ import annotations

from typing import Any

import pytest

from storefront.db.models import Shopper

WATER, COFFEE = "5000112637922", "COFFEE.250"


@pytest.fixture
def shop(make_store: Any) -> dict[str, Any]:
    """A store with products, one enrolled shopper inside with 2 water in the cart."""
    store = make_store()
    store.add_products()
    shopper = store.register("Eve")
    store.enrol(shopper, 3)
    entry = store.enter(store.palm_png(3, store.PROBE_CAPTURE))
    assert entry["admitted"] and entry["shopper_id"] == shopper
    session_id = entry["session_id"]
    first = store.event("picked", WATER, 2, "cart-1", 1, 10)
    assert store.send(session_id, first).status_code == 201
    return {"store": store, "shopper": shopper, "session": session_id, "first": first}


def _assert_intact(shop: dict[str, Any], shoppers: int = 1) -> None:
    """What was stored before the bad requests is all still there, once."""
    store, shopper, session_id = shop["store"], shop["shopper"], shop["session"]
    assert store.cart(session_id) == {WATER: 2}
    view = store.session(session_id)
    assert view["status"] == "open" and view["flags"] == []
    r = store.client.get(f"/shoppers/{shopper}")
    assert r.status_code == 200 and r.json()["display_name"] == "Eve"
    with store.container.db() as db:
        assert db.query(Shopper).count() == shoppers
    # The palm still identifies its shopper (asked of the identity service: entering at
    # the gate would close the open session, the shopper being in the store once).
    found = store.container.identity.identify(image=store.palm_png(3, store.PROBE_CAPTURE))
    assert found.subject_id == shopper


NOT_AN_IMAGE = b"%PDF-1.4 this is a document, not a palm capture\n" * 20


def test_uploads_that_are_not_images(shop: dict[str, Any]) -> None:
    store, shopper = shop["store"], shop["shopper"]
    c = store.client
    enrol = f"/shoppers/{shopper}/palms"
    # The shopper's code: a refused upload does not use it up.
    form = {"consent_text_version": "2026-11", "enrolment_code": store.enrolment_code(shopper)}

    # Not an image (enrol and gate).
    store.error_of(c.post(enrol, data=form,
                          files=[("images", ("doc.pdf", NOT_AN_IMAGE, "image/png"))]),
                   422)
    store.error_of(c.post("/gates/entry", files={"image": ("doc.pdf", NOT_AN_IMAGE,
                                                           "image/png")}), 422)
    # Empty uploads.
    body = store.error_of(c.post(enrol, data=form,
                                 files=[("images", ("empty.png", b"", "image/png"))]), 422)
    assert "empty" in body["reason"]
    body = store.error_of(c.post("/gates/entry", files={"image": ("e.png", b"", "image/png")}),
                          422)
    assert "empty" in body["reason"]
    # No files at all.
    store.error_of(c.post(enrol), 422)
    store.error_of(c.post(enrol, data={"note": "no file"}), 422)
    store.error_of(c.post("/gates/entry"), 422)
    # More captures than one enrolment takes: refused before any is read.
    most = store.container.identity.max_enrolment_captures
    many = [("images", (f"n{i}.png", NOT_AN_IMAGE, "image/png")) for i in range(most + 1)]
    body = store.error_of(c.post(enrol, data=form, files=many), 422)
    assert f"between 1 and {most} captures are needed ({most + 1} sent)" in body["reason"]
    # Unknown shopper enrol: no code can be theirs (Eve's code is hers only).
    body = store.error_of(c.post("/shoppers/shp_nobody/palms", data=form,
                                 files=[("images", ("p.png", store.palm_png(9, 0), "image/png"))]),
                          403)
    assert body["error"] == "enrolment_code_refused" and "sign up" in body["reason"]
    # Palm 9 was never enrolled by any of the refused requests.
    refused = store.enter(store.palm_png(9, store.PROBE_CAPTURE))
    assert refused["admitted"] is False and refused["session_id"] is None
    _assert_intact(shop)


def test_mixed_batch_reports_each_capture(make_store: Any) -> None:
    """A bad capture among good ones is refused with its reason; the good ones enrol once."""
    store = make_store()
    shopper = store.register("Fay")
    mixed = [("images", ("ok0.png", store.palm_png(9, 0), "image/png")),
             ("images", ("bad.png", NOT_AN_IMAGE, "image/png")),
             ("images", ("ok1.png", store.palm_png(9, 1), "image/png"))]
    r = store.client.post(f"/shoppers/{shopper}/palms", files=mixed,
                          data={"consent_text_version": "2026-11",
                                "enrolment_code": store.enrolment_code(shopper)})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["templates"] == 2
    outcomes = {o["index"]: o for o in body["captures"]}
    assert outcomes[0]["accepted"] and outcomes[2]["accepted"]
    assert not outcomes[1]["accepted"] and "image" in outcomes[1]["reason"]
    entry = store.enter(store.palm_png(9, store.PROBE_CAPTURE))
    assert entry["admitted"] and entry["shopper_id"] == shopper


def test_palm_of_another_shopper_and_oversized_upload(shop: dict[str, Any]) -> None:
    store, shopper = shop["store"], shop["shopper"]
    c = store.client
    # Eve's palm cannot be enrolled again for someone else.
    mallory = store.register("Mallory")
    files = [("images", (f"{i}.png", store.palm_png(3, i), "image/png")) for i in range(5)]
    store.error_of(c.post(f"/shoppers/{mallory}/palms", files=files,
                          data={"consent_text_version": "2026-11",
                                "enrolment_code": store.enrolment_code(mallory)}), 422)
    found = store.container.identity.identify(image=store.palm_png(3, store.PROBE_CAPTURE))
    assert found.subject_id == shopper
    # More than 10 MiB in one file.
    huge = store.palm_png(3, 0) + b"\0" * (10 * 1024 * 1024)
    body = store.error_of(c.post("/gates/entry", files={"image": ("big.png", huge, "image/png")}),
                          422)
    assert "exceeds" in body["reason"]
    _assert_intact(shop, shoppers=2)


def test_event_errors(shop: dict[str, Any]) -> None:
    store, session_id = shop["store"], shop["session"]
    c = store.client

    body = store.error_of(store.send(session_id, store.event("picked", "NOPE-42", 1, "cart-1",
                                                             2, 11)), 422)
    assert "NOPE-42" in body["reason"]
    body = store.error_of(store.send("ses_missing", store.event("picked", WATER, 1, "cart-1",
                                                                3, 12)), 404)
    assert "ses_missing" in body["reason"]
    # Replay: 409, and the quantity is counted once.
    store.error_of(store.send(session_id, shop["first"]), 409)
    assert store.cart(session_id) == {WATER: 2}
    # The same (device, seq) with other content is still a replay.
    changed = dict(shop["first"], quantity=5)
    store.error_of(store.send(session_id, changed), 409)

    good = store.event("picked", COFFEE, 1, "cart-1", 7, 13)
    bad_bodies: list[tuple[str, Any]] = [
        ("missing field", {k: v for k, v in good.items() if k != "device_seq"}),
        ("naive time", dict(good, sensor_time="2026-03-02T09:00:13")),
        ("quantity 0", dict(good, quantity=0)),
        ("negative quantity", dict(good, quantity=-1)),
        ("extra field", dict(good, price_minor=1)),
        ("unknown kind", dict(good, kind="stolen")),
        ("confidence > 1", dict(good, confidence=1.5)),
        ("bad device id", dict(good, device_id="cart 1/..")),
    ]
    for label, bad in bad_bodies:
        r = store.send(session_id, bad)
        assert r.status_code == 422, (label, r.text)
        store.error_of(r, 422)
    r = c.post(f"/sessions/{session_id}/events", content=b'{"kind": "picked", ',
               headers={"content-type": "application/json"})
    store.error_of(r, 422)
    r = c.post(f"/sessions/{session_id}/events", content=b"[]",
               headers={"content-type": "application/json"})
    store.error_of(r, 422)
    # None of the refused bodies reached the log; the good one still goes in afterwards once.
    assert store.cart(session_id) == {WATER: 2}
    assert store.send(session_id, good).status_code == 201
    store.error_of(store.send(session_id, good), 409)
    assert store.cart(session_id) == {WATER: 2, COFFEE: 1}


def test_closed_session_and_unknown_exit(shop: dict[str, Any]) -> None:
    store, session_id = shop["store"], shop["session"]
    c = store.client
    body = store.error_of(c.post("/sessions/ses_missing/exit"), 404)
    assert "ses_missing" in body["reason"]
    store.error_of(c.get("/sessions/ses_missing"), 404)

    out = c.post(f"/sessions/{session_id}/exit").json()
    assert out["status"] == "paid" and out["total_minor"] == 2 * 95
    body = store.error_of(store.send(session_id, store.event("picked", WATER, 1, "cart-1", 5,
                                                             40)), 409)
    assert store.session(session_id)["cart"] == [{"product_code": WATER, "quantity": 2}]
    assert store.processor.captured_total() == 190


def test_shopper_and_product_input(shop: dict[str, Any]) -> None:
    store = shop["store"]
    c = store.client
    for token in ("4111111111111111", "4242424242424242"):
        body = store.error_of(c.post("/shoppers", json={"display_name": "Mallory",
                                                        "payment_token": token}), 422)
        assert "card" in body["reason"]
    store.error_of(c.post("/shoppers", json={"display_name": "Mallory"}), 422)
    store.error_of(c.post("/shoppers", json={"display_name": "M", "payment_token": "t",
                                             "card_number": "4111111111111111"}), 422)
    store.error_of(c.post("/shoppers", json={"display_name": "   ", "payment_token": "tok"}),
                   422)
    store.error_of(c.get("/shoppers/shp_nobody"), 404)
    store.error_of(c.put("/products/X1", json={"code": "X2", "name": "x",
                                                "unit_price_minor": 1}), 422)
    store.error_of(c.put("/products/X1", json={"code": "X1", "name": "x",
                                                "unit_price_minor": -5}), 422)
    store.error_of(c.get("/products/X1"), 404)
    with store.container.db() as db:
        assert db.query(Shopper).count() == 1
    _assert_intact(shop)


def test_intact_after_everything(shop: dict[str, Any]) -> None:
    """A batch of every kind of bad request, then the state check."""
    store, shopper, session_id = shop["store"], shop["shopper"], shop["session"]
    c = store.client
    c.post(f"/shoppers/{shopper}/palms", files=[("images", ("x.png", b"junk", "image/png"))],
           data={"consent_text_version": "2026-11",
                 "enrolment_code": store.enrolment_code(shopper)})
    c.post("/gates/entry", files={"image": ("x.png", b"junk", "image/png")})
    store.send(session_id, shop["first"])
    store.send(session_id, dict(shop["first"], device_seq=99, product_code="NOPE"))
    c.post("/shoppers", json={"display_name": "Card", "payment_token": "5555555555554444"})
    _assert_intact(shop)
