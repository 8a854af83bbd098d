"""Who may read a shopping session over the API: checkout staff, gates and carts of this
store; a shelf plate or scanner gets 403; a session of another store sharing the database
is 404."""

from __future__ import annotations

from typing import Any

from storefront.security.client import LocalAccess


def _get_as(store: Any, path: str, device_id: str, kind: str) -> Any:
    client = store.client
    access: LocalAccess = client.auth
    request = client.build_request("GET", path)
    access.signed(request, device_id, kind)
    return client.send(request, auth=lambda r: r)


def test_plates_and_scanners_may_not_read_sessions(make_store: Any) -> None:
    store = make_store()
    shopper = store.container.shoppers.register(display_name="Ira", payment_token="tok_ira").id
    sid = store.container.gates.open_session(shopper_id=shopper, entry_method="palm")
    assert _get_as(store, f"/sessions/{sid}", "gate-7", "gate").status_code == 200
    assert _get_as(store, f"/sessions/{sid}", "cart-7", "cart").status_code == 200
    for device, kind in (("plate-7", "plate"), ("scan-7", "scanner")):
        body = store.error_of(_get_as(store, f"/sessions/{sid}", device, kind), 403)
        assert f"a {kind} device may not do this" in body["reason"]
    assert store.client.get(f"/sessions/{sid}").status_code == 200  # staff


def test_a_session_of_another_store_is_404(make_store: Any) -> None:
    store = make_store()
    c = store.container
    shopper = c.shoppers.register(display_name="Uma", payment_token="tok_uma").id
    c.carts.open("ses_elsewhere", shopper, "another-store", "palm")
    c.read_model.opened(session_id="ses_elsewhere", shopper_id=shopper,
                        store_id="another-store", entry_method="palm", at=c.checkout.clock())
    body = store.error_of(store.client.get("/sessions/ses_elsewhere"), 404)
    assert "in this store" in body["reason"]
    body = store.error_of(store.client.post("/sessions/ses_elsewhere/exit"), 404)
    assert "in this store" in body["reason"]
