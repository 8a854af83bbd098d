"""Shopper sign-in hardening over HTTP: with TOTP on, a wrong password and a right one with
a missing, wrong or used code get one answer and count as failures; turning TOTP on ends
the shopper's other sessions; sign-up's "address taken" answers are throttled per client
address (API and page) and cost the same argon2 work as a free address."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import build_privacy
from storefront.settings import Settings

PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """argon2 at a test cost, counting the hashes made."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.hashed = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashed += 1
        return super().hash(password, salt=salt)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[TestClient, Container, CountingHasher]]:
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=SimulatedProcessor(seed=5, decline_rate=0.0))
    hasher = CountingHasher()
    app = create_app(container)
    app.state.privacy = build_privacy(container, hasher=hasher)
    with TestClient(app, follow_redirects=False) as client:
        yield client, container, hasher
    container.close()


def _sign_up(client: TestClient, name: str, **extra: Any) -> Any:
    return client.post("/auth/signup", json={"email": f"{name}@example.org",
                                             "password": PASSWORD, "display_name": name,
                                             "payment_token": f"tok_{name}"}, **extra)


def _login(client: TestClient, password: str = PASSWORD, code: str | None = None) -> Any:
    body = {"email": "ann@example.org", "password": password}
    return client.post("/auth/login", json=body | ({"totp_code": code} if code else {}))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _with_totp(client: TestClient) -> tuple[pyotp.TOTP, str, dict[str, Any]]:
    """ann signed up with two sessions; TOTP turned on from the first. (totp, the first
    session's token, the verify answer)."""
    assert _sign_up(client, "ann").status_code == 201
    first, second = (_login(client).json()["token"] for _ in range(2))
    uri = client.post("/auth/totp/enrol", headers=_bearer(first)).json()["provisioning_uri"]
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    verified = client.post("/auth/totp/verify", headers=_bearer(first),
                           json={"code": totp.now()})
    assert verified.status_code == 200, verified.text
    assert client.get("/me", headers=_bearer(second)).status_code == 401
    return totp, first, verified.json()


def test_turning_totp_on_ends_the_other_sessions(shop: Any) -> None:
    client, _c, _h = shop
    _totp, first, answer = _with_totp(client)
    assert answer == {"totp_enabled": True, "sessions_ended": 1}
    assert client.get("/me", headers=_bearer(first)).json()["totp_enabled"] is True


def test_failures_with_totp_on_look_the_same_and_count(shop: Any) -> None:
    client, _c, _h = shop
    totp, _first, _answer = _with_totp(client)
    used = totp.now()  # turned TOTP on: used
    wrong = "000000" if used != "000000" else "111111"
    answers = [_login(client, "wrong password!"),
               _login(client, "wrong password!", totp.at(time.time() + 30)),
               _login(client),
               _login(client, code=wrong),
               _login(client, code=used)]
    assert {(r.status_code, r.text) for r in answers} == {
        (401, '{"error":"unauthenticated","reason":"wrong e-mail, password or TOTP code"}')}
    limited = _login(client, code=totp.at(time.time() + 30))  # right, but 5 failures
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_signup_taken_answers_are_throttled_per_address(shop: Any) -> None:
    client, c, hasher = shop
    assert _sign_up(client, "ann").status_code == 201
    before = hasher.hashed
    for _ in range(5):
        r = _sign_up(client, "ann")
        assert r.status_code == 409 and "already exists" in r.json()["reason"]
    assert hasher.hashed - before == 5  # a taken address costs its argon2 hash too
    for name in ("ann", "bea"):  # then nothing from this address, taken or free
        r = _sign_up(client, name)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
    other = TestClient(client.app, client=("10.9.8.7", 5000))
    assert _sign_up(other, "bea").status_code == 201
    assert _sign_up(other, "ann").status_code == 409
    page = TestClient(client.app, client=("10.9.8.6", 5000))
    form = {"display_name": "Ann", "email": "ann@example.org", "payment_token": "tok_a",
            "password": PASSWORD, "password_again": PASSWORD}
    statuses = [page.post("/portal/signup", data=form).status_code for _ in range(6)]
    assert statuses == [409] * 5 + [429]
    assert page.post("/portal/signup", data=form).headers["Retry-After"]


def test_the_same_code_signs_in_once(shop: Any) -> None:
    client, _c, _h = shop
    totp, _first, _answer = _with_totp(client)
    code = totp.at(time.time() + 30)
    assert _login(client, code=code).status_code == 200
    assert _login(client, code=code).status_code == 401
    assert _login(client, code=totp.now()).status_code == 401  # an earlier step
