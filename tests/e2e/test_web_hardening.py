"""Attacks on the pages found by a review, each pinned by a test: staff sign-in guessing,
forms from an opaque (``null``) or other-scheme origin, NUL characters, digits of other
scripts, over-long return targets, and error pages that keep the way to sign out.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(make_store: Any) -> Any:
    built = make_store()
    staff = built.container.security.staff
    staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    staff.add(staff_id="aud", role="auditor", password=PASSWORD)
    return built


def _browser(store: Any) -> TestClient:
    return TestClient(store.client.app)


def _sign_in(client: TestClient, staff_id: str, password: str = PASSWORD) -> Any:
    return client.post("/console/login", data={"staff_id": staff_id, "password": password,
                                               "next": "/console"}, follow_redirects=False)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "no csrf field"
    return found.group(1)


def test_staff_sign_in_is_throttled_per_staff_id(store: Any) -> None:
    client = _browser(store)
    for _ in range(5):
        assert _sign_in(client, "cal", "wrong password").status_code == 401
    throttled = _sign_in(client, "cal")  # even the right password waits now
    assert throttled.status_code == 429 and "too many failed sign-ins" in throttled.text
    assert "sf_staff" not in throttled.headers.get("set-cookie", "")
    api = client.post("/staff/login", json={"staff_id": "cal", "password": PASSWORD})
    assert api.status_code == 429 and int(api.headers["retry-after"]) >= 1
    assert api.json()["error"] == "rate_limited"


def test_forms_from_an_opaque_or_other_scheme_origin_are_refused(store: Any) -> None:
    client = _browser(store)
    for origin in ("null", "https://testserver", "http://testserver.evil.example"):
        r = client.post("/console/login", data={"staff_id": "cal", "password": PASSWORD},
                        headers={"origin": origin}, follow_redirects=False)
        assert r.status_code == 403, origin
        assert "sf_staff" not in r.headers.get("set-cookie", "")
    assert _sign_in(client, "cal").status_code == 303  # same origin, or none sent


def test_a_nul_character_in_any_form_field_is_a_clear_422(store: Any) -> None:
    client = _browser(store)
    r = client.post("/portal/login", data={"email": "a\x00b@example.org", "password": "x"})
    assert r.status_code == 422 and "NUL character" in r.text
    assert _sign_in(client, "cal").status_code == 303
    page = client.get("/console/tills")
    r = client.post("/console/tills/open", data={"csrf": _csrf(page.text), "till": "t1",
                                                 "float": "10.00", "note": "a\x00"})
    assert r.status_code == 422 and "NUL character" in r.text


def test_amounts_take_ascii_digits_only(store: Any) -> None:
    client = _browser(store)
    assert _sign_in(client, "cal").status_code == 303
    page = client.get("/console/tills")
    for typed in ("\uff15", "\u0661\u0662", "1\u0662"):  # fullwidth 5, Arabic-Indic 12
        r = client.post("/console/tills/open", data={"csrf": _csrf(page.text),
                                                     "till": "t1", "float": typed})
        assert "opened" not in r.text.lower(), typed
    with store.container.db() as db:
        from storefront.db.models import CashDrawer
        assert db.query(CashDrawer).count() == 0


def test_an_over_long_return_target_is_ignored(store: Any) -> None:
    client = _browser(store)
    r = client.get("/console/login", params={"next": "/console/" + "x" * 600})
    assert r.status_code == 200 and 'name="next" value="/console"' in r.text


def test_error_pages_keep_the_sign_out_button(store: Any) -> None:
    client = _browser(store)
    assert _sign_in(client, "aud").status_code == 303
    page = client.get("/console/checkout")
    assert page.status_code == 403 and "role auditor may not use this page" in page.text
    assert 'action="/console/logout"' in page.text
    signed_out = client.post("/console/logout", data={"csrf": _csrf(page.text)},
                             follow_redirects=False)
    assert signed_out.status_code == 303
