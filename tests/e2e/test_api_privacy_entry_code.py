"""Paying without a palm: an app entry code from ``POST /me/entry-code`` opens a session at
a signed gate once; a used, expired, unknown or unsigned code does not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import build_privacy
from storefront.security.devices_http import sign_headers
from storefront.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[dict[str, Any]]:
    clock = Clock()
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=SimulatedProcessor(seed=5, decline_rate=0.0))
    app = create_app(container)
    app.state.privacy = build_privacy(container, clock=clock, hasher=PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1))
    key = container.security.registry.add(store_id=container.settings.store_id,
                                          device_id="gate-9", kind="gate")
    with TestClient(app) as client:
        r = client.post("/auth/signup", json={"email": "cy@example.org",
                                              "password": "correct horse battery",
                                              "display_name": "Cy", "payment_token": "tok_cy"})
        shopper = r.json()["shopper_id"]
        token = client.post("/auth/login", json={"email": "cy@example.org",
                                                 "password": "correct horse battery"}
                            ).json()["token"]
        yield {"client": client, "key": key, "clock": clock, "shopper": shopper,
               "auth": {"Authorization": f"Bearer {token}"}}
    container.close()


def _redeem(gate: dict[str, Any], code: str, signed: bool = True) -> Any:
    body = json.dumps({"code": code}).encode()
    headers = {"content-type": "application/json"}
    if signed:
        headers |= sign_headers(gate["key"], device_id="gate-9", method="POST",
                                path="/gates/entry/code", query="", body=body,
                                ts_ms=int(time.time() * 1000))
    return gate["client"].post("/gates/entry/code", content=body, headers=headers)


def test_an_entry_code_opens_one_session(gate: dict[str, Any]) -> None:
    client = gate["client"]
    issued = client.post("/me/entry-code", headers=gate["auth"]).json()
    assert len(issued["code"]) == 10
    unsigned = _redeem(gate, issued["code"], signed=False)
    assert unsigned.status_code in (401, 403), unsigned.text
    first = _redeem(gate, issued["code"].lower()).json()
    assert first["admitted"] and first["shopper_id"] == gate["shopper"]
    again = _redeem(gate, issued["code"]).json()
    assert not again["admitted"] and "staffed checkout" in again["reason"]
    trips = client.get("/me/trips", headers=gate["auth"]).json()
    assert [(t["session_id"], t["entry_method"]) for t in trips] == [(first["session_id"],
                                                                      "app")]


def test_expired_unknown_and_malformed_codes(gate: dict[str, Any]) -> None:
    issued = gate["client"].post("/me/entry-code", headers=gate["auth"]).json()
    gate["clock"].now += timedelta(minutes=3)
    assert not _redeem(gate, issued["code"]).json()["admitted"]
    assert not _redeem(gate, "ABCDEFGHJK").json()["admitted"]
    bad = _redeem(gate, "<script>")
    assert bad.status_code == 422 and "code" in bad.json()["reason"]
    assert gate["client"].post("/me/entry-code").status_code == 401


def test_at_most_five_live_codes_then_429_with_retry_after(gate: dict[str, Any]) -> None:
    client, auth = gate["client"], gate["auth"]
    for _ in range(5):
        assert client.post("/me/entry-code", headers=auth).status_code == 201
    gate["clock"].now += timedelta(seconds=20)
    r = client.post("/me/entry-code", headers=auth)
    assert r.status_code == 429 and r.headers["retry-after"] == "100", r.text
    assert "at most 5 unused entry codes" in r.json()["reason"]
    gate["clock"].now += timedelta(seconds=100)  # the first five expired
    assert client.post("/me/entry-code", headers=auth).status_code == 201
