"""The shopper sign-up page: a new shopper at the kiosk creates an account and is signed in;
bad input comes back with the reason and creates nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from storefront.db.models import ShopperAccount
from storefront.privacy.wiring import build_privacy

GOOD = {"display_name": "נועה לוי", "email": "noa@example.org", "password": "a long password",
        "password_again": "a long password", "payment_token": "tok_visa",
        "next": "/kiosk/enrol"}


@pytest.fixture
def browser(make_store: Any) -> tuple[Any, TestClient]:
    store = make_store()
    app = store.client.app
    app.state.privacy = build_privacy(
        store.container, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return store, TestClient(app)


def _accounts(store: Any) -> int:
    with store.container.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(ShopperAccount)) or 0)


def test_a_new_shopper_signs_up_and_lands_signed_in_at_the_kiosk(
        browser: tuple[Any, TestClient]) -> None:
    store, client = browser
    login = client.get("/portal/login?next=%2Fkiosk%2Fenrol")
    assert 'href="/portal/signup?next=/kiosk/enrol"' in login.text
    form = client.get("/portal/signup?next=/kiosk/enrol")
    assert form.status_code == 200 and 'for="f-payment_token"' in form.text
    done = client.post("/portal/signup", data=GOOD, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/kiosk/enrol"
    kiosk = client.get("/kiosk/enrol")
    assert kiosk.status_code == 200 and "Signed in as" in kiosk.text and "נועה לוי" in kiosk.text
    assert _accounts(store) == 1


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"password_again": "another password"}, 422, "the two passwords differ"),
    ({"password": "short", "password_again": "short"}, 422, "password must be"),
    ({"payment_token": "4111 1111 1111 1111"}, 422, "card number"),
    ({"email": "not-an-address"}, 422, "e-mail"),
    ({"display_name": ""}, 422, "name"),
])
def test_bad_input_comes_back_with_the_reason(browser: tuple[Any, TestClient],
                                              change: dict[str, str], status: int,
                                              reason: str) -> None:
    store, client = browser
    answer = client.post("/portal/signup", data={**GOOD, **change})
    assert answer.status_code == status and reason in answer.text, answer.text[-600:]
    assert 'role="alert"' in answer.text and _accounts(store) == 0
    assert "a long password" not in answer.text  # passwords are never echoed back


def test_an_address_already_registered_is_a_409(browser: tuple[Any, TestClient]) -> None:
    store, client = browser
    assert client.post("/portal/signup", data=GOOD, follow_redirects=False).status_code == 303
    again = TestClient(store.client.app).post("/portal/signup", data=GOOD)
    assert again.status_code == 409 and "already exists" in again.text
    assert _accounts(store) == 1
