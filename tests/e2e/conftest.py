"""Helpers for the end-to-end API tests: a store built in-process and driven over HTTP.

The app is the real one (``create_app`` around a ``bootstrap``-ed container on SQLite
in ``tmp_path``, or on the URL given), palms are seeded synthetic captures.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

PALM_SEED = 4242
SHOPPER_PASSWORD = "e2e-shopper-password"
ENROL_CAPTURES = range(5)
PROBE_CAPTURE = 5
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

PRODUCTS: dict[str, tuple[str, int]] = {
    "5000112637922": ("Sparkling water 1l", 95),
    "5010029000016": ("Oat biscuits", 149),
    "APPLE-1": ("Apple, each", 35),
    "COFFEE.250": ("Ground coffee 250g", 425),
}


@cache
def palm_png(palm: int, capture: int) -> bytes:
    """One synthetic capture of ``palm`` as PNG bytes (cached: rendering costs a few ms)."""
    return encode_png(SyntheticPalms(PALM_SEED).capture(palm, capture))


def at(seconds: float) -> str:
    """An ISO sensor time (with offset) ``seconds`` after the test day's start."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def event(kind: str, code: str, qty: int, device: str, seq: int, seconds: float,
          confidence: float = 1.0) -> dict[str, Any]:
    """An item-event body."""
    return {"kind": kind, "product_code": code, "quantity": qty, "device_id": device,
            "device_seq": seq, "sensor_time": at(seconds), "confidence": confidence}


@dataclass
class Store:
    """A running app with its container and processor, plus the helpers above.

    Test modules get everything through the ``make_store`` fixture (they do not import
    this conftest, whose module name clashes with ``tests/conftest.py``).
    """

    client: TestClient
    container: Container
    processor: SimulatedProcessor
    bearers: dict[str, str] = field(default_factory=dict)  # shopper id -> session token

    # Module helpers, reachable from the test modules through the fixture.
    PRODUCTS = PRODUCTS
    PROBE_CAPTURE = PROBE_CAPTURE
    palm_png = staticmethod(palm_png)
    event = staticmethod(event)
    at = staticmethod(at)
    error_of = staticmethod(lambda response, status: error_of(response, status))

    def add_products(self, products: dict[str, tuple[str, int]] = PRODUCTS) -> None:
        for code, (name, price) in products.items():
            r = self.client.put(f"/products/{code}",
                                json={"code": code, "name": name, "unit_price_minor": price})
            assert r.status_code == 200, r.text

    def register(self, name: str, token: str | None = None) -> str:
        """A shopper with a sign-in account (``POST /auth/signup``, then ``/auth/login``;
        the bearer token is kept in ``bearers``): staff can enrol a palm only with the
        shopper's enrolment code, which a shopper registered by staff cannot make."""
        email = f"{re.sub(r'[^a-z0-9]+', '.', name.lower())}.{len(self.bearers)}@example.org"
        r = self.client.post("/auth/signup", json={
            "email": email, "password": SHOPPER_PASSWORD, "display_name": name,
            "payment_token": token or f"tok_{name.lower()}"})
        assert r.status_code == 201, r.text
        r = self.client.post("/auth/login", json={"email": email, "password": SHOPPER_PASSWORD})
        assert r.status_code == 200, r.text
        self.bearers[r.json()["shopper_id"]] = r.json()["token"]
        return str(r.json()["shopper_id"])

    def enrolment_code(self, shopper_id: str) -> str:
        """A fresh enrolment code, made by the signed-in shopper (``POST /me/enrolment-codes``)."""
        r = self.client.post("/me/enrolment-codes",
                             headers={"Authorization": f"Bearer {self.bearers[shopper_id]}"})
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def enrol(self, shopper_id: str, palm: int) -> dict[str, Any]:
        """Staff-assisted enrolment with the shopper's code and consent given at the staff point."""
        files = [("images", (f"p{palm}_c{c}.png", palm_png(palm, c), "image/png"))
                 for c in ENROL_CAPTURES]
        r = self.client.post(f"/shoppers/{shopper_id}/palms", files=files,
                             data={"consent_text_version": "2026-11",
                                   "enrolment_code": self.enrolment_code(shopper_id)})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        assert body["templates"] >= 1
        return body

    def enter(self, image: bytes) -> dict[str, Any]:
        r = self.client.post("/gates/entry", files={"image": ("probe.png", image, "image/png")})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def send(self, session_id: str, body: dict[str, Any]) -> Any:
        return self.client.post(f"/sessions/{session_id}/events", json=body)

    def session(self, session_id: str) -> dict[str, Any]:
        r = self.client.get(f"/sessions/{session_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def cart(self, session_id: str) -> dict[str, int]:
        return {line["product_code"]: line["quantity"]
                for line in self.session(session_id)["cart"]}


StoreFactory = Callable[..., Store]


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[StoreFactory]:
    """Build stores: ``make_store(decline_rate=0.0, database_url=None, seed=7)``."""
    stack: list[tuple[TestClient, Container]] = []

    def build(*, decline_rate: float = 0.0, database_url: str | None = None,
              seed: int = 7, data_dir: Path | None = None) -> Store:
        folder = data_dir or tmp_path / f"store{len(stack)}"
        processor = SimulatedProcessor(seed=seed, decline_rate=decline_rate)
        container = bootstrap(Settings(data_dir=folder, database_url=database_url),
                              processor=processor)
        client = authenticated(TestClient(create_app(container)), container.security,
                           container.settings.store_id)
        client.__enter__()
        stack.append((client, container))
        return Store(client, container, processor)

    yield build
    for client, container in reversed(stack):
        client.__exit__(None, None, None)
        container.close()


def error_of(response: Any, status: int) -> dict[str, str]:
    """Assert ``response`` is the JSON error shape with ``status``; return the body."""
    assert response.status_code == status, response.text
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "reason"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["reason"], str) and len(body["reason"]) > 5
    return body
