"""Passwords are taken as typed on the web forms, as on the JSON API: a password with
spaces at either end signs in on the console and the portal, and the same password
without them does not."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PADDED = "  padded passphrase 1 "


def _console_login(app: Any, password: str) -> int:
    console = TestClient(app, follow_redirects=False)
    r = console.post("/console/login", data={"staff_id": "pad", "password": password,
                                              "next": "/console"})
    return r.status_code


def _portal_login(app: Any, password: str) -> int:
    portal = TestClient(app, follow_redirects=False)
    r = portal.post("/portal/login", data={"email": "pad@example.org", "password": password,
                                            "next": "/portal"})
    return r.status_code


def test_a_staff_password_with_spaces_at_its_ends_signs_in_on_the_console(
        make_store: Any) -> None:
    store = make_store()
    store.container.security.staff.add(staff_id="pad", role="cashier", password=PADDED)
    api = TestClient(store.client.app)
    assert api.post("/staff/login", json={"staff_id": "pad",
                                          "password": PADDED}).status_code == 200
    assert _console_login(store.client.app, PADDED) == 303
    assert _console_login(store.client.app, PADDED.strip()) == 401


def test_a_shopper_password_with_spaces_at_its_ends_signs_in_on_the_portal(
        make_store: Any) -> None:
    store = make_store()
    api = TestClient(store.client.app)
    r = api.post("/auth/signup", json={"email": "pad@example.org", "password": PADDED,
                                       "display_name": "Pad", "payment_token": "tok_pad"})
    assert r.status_code == 201, r.text
    assert _portal_login(store.client.app, PADDED) == 303
    assert _portal_login(store.client.app, PADDED.strip()) == 401
