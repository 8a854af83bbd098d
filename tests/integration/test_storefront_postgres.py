"""The store's core flow over HTTP on PostgreSQL, and a restart on the same database.

A second container built on the same database (and key file) must reload and decrypt
the palm templates, identify the palm again, and still serve the receipt; the same
restart is checked on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from identity.errors import TemplateDecryptionError
from identity.imageio import encode_png
from identity.protection import load_or_create_key_file
from identity.service import template_from_image
from identity.synthetic import SyntheticPalms
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.db.models import PalmTemplate, Receipt
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

WATER, COFFEE = "5000112637922", "COFFEE.250"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@cache
def _palm(palm: int, capture: int) -> bytes:
    return encode_png(SyntheticPalms(99).capture(palm, capture))


def _event(kind: str, code: str, qty: int, seq: int, seconds: float) -> dict[str, Any]:
    return {"kind": kind, "product_code": code, "quantity": qty, "device_id": "cart-pg",
            "device_seq": seq, "sensor_time": (T0 + timedelta(seconds=seconds)).isoformat(),
            "confidence": 1.0}


@contextmanager
def _store(data_dir: Path, database_url: str | None,
           processor: SimulatedProcessor | None = None
           ) -> Iterator[tuple[TestClient, Container]]:
    container = bootstrap(Settings(data_dir=data_dir, database_url=database_url),
                          processor=processor or SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        with authenticated(TestClient(create_app(container)), container.security,
                           container.settings.store_id) as client:
            yield client, container
    finally:
        container.close()


def _enter(client: TestClient, palm: int) -> dict[str, Any]:
    r = client.post("/gates/entry", files={"image": ("p.png", _palm(palm, 5), "image/png")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _core_flow(client: TestClient, container: Container) -> dict[str, Any]:
    """Register two shoppers, enrol, enter, shop (with a replay) and exit; returns ids."""
    for code, name, price in ((WATER, "Water", 95), (COFFEE, "Coffee", 425)):
        r = client.put(f"/products/{code}",
                       json={"code": code, "name": name, "unit_price_minor": price})
        assert r.status_code == 200, r.text
    shoppers = []
    for palm, name in enumerate(("Gus", "Hal")):
        # A shopper with a sign-in account: staff enrol only with the shopper's code.
        login = {"email": f"{name.lower()}@example.org", "password": "pg-shopper-password"}
        r = client.post("/auth/signup", json={**login, "display_name": name,
                                              "payment_token": f"tok_{name}"})
        assert r.status_code == 201, r.text
        shopper = r.json()["shopper_id"]
        token = client.post("/auth/login", json=login).json()["token"]
        made = client.post("/me/enrolment-codes", headers={"Authorization": f"Bearer {token}"})
        assert made.status_code == 201, made.text
        files = [("images", (f"{c}.png", _palm(palm, c), "image/png")) for c in range(5)]
        r = client.post(f"/shoppers/{shopper}/palms", files=files,
                        data={"consent_text_version": "2026-11",
                              "enrolment_code": made.json()["code"]})
        assert r.status_code == 201, r.text
        assert r.json()["templates"] == 5
        shoppers.append(shopper)

    entry = _enter(client, 1)
    assert entry["admitted"] and entry["shopper_id"] == shoppers[1]
    session_id = entry["session_id"]
    events = [_event("picked", WATER, 3, 1, 10), _event("put_back", WATER, 1, 3, 30),
              _event("picked", COFFEE, 1, 2, 20)]
    for body in events:
        assert client.post(f"/sessions/{session_id}/events", json=body).status_code == 201
    replay = client.post(f"/sessions/{session_id}/events", json=events[0])
    assert replay.status_code == 409 and replay.json()["reason"]
    view = client.get(f"/sessions/{session_id}").json()
    assert view["cart"] == [{"product_code": WATER, "quantity": 2},
                            {"product_code": COFFEE, "quantity": 1}]
    out = client.post(f"/sessions/{session_id}/exit").json()
    assert out["status"] == "paid", out
    assert out["total_minor"] == 2 * 95 + 425 and out["receipt_id"]
    assert container.processor.captured_total() == 615  # type: ignore[attr-defined]
    return {"shoppers": shoppers, "session": session_id, "receipt": out["receipt_id"],
            "events": events}


def _restart_check(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "store"
    with _store(data_dir, database_url) as (client, container):
        first = _core_flow(client, container)
        with container.db() as db:
            rows = db.query(PalmTemplate).all()
            assert len(rows) == 10
            assert {row.shopper_id for row in rows} == set(first["shoppers"])
        # Stored encrypted: the plaintext template of a capture appears in no row.
        plain = template_from_image(_palm(0, 0)).to_bytes()
        assert not any(plain[16:80] in bytes(row.ciphertext) for row in rows)

    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    with _store(data_dir, database_url, processor) as (client, container):
        # The palm index was rebuilt from the decrypted rows.
        for palm, shopper in enumerate(first["shoppers"]):
            entry = _enter(client, palm)
            assert entry["admitted"] and entry["shopper_id"] == shopper, entry
        # The receipt and the session survive; a retried exit returns it without a charge.
        session_id = first["session"]
        view = client.get(f"/sessions/{session_id}").json()
        assert view["status"] == "settled" and view["total_minor"] == 615
        out = client.post(f"/sessions/{session_id}/exit").json()
        assert out["status"] == "paid" and out["receipt_id"] == first["receipt"]
        assert out["total_minor"] == 615
        assert processor.captured_total() == 0
        with container.db() as db:
            assert db.query(Receipt).filter_by(session_id=session_id).count() == 1
        # Idempotency is in the database, not in memory: the replay is still refused.
        r = client.post(f"/sessions/{session_id}/events", json=first["events"][1])
        assert r.status_code == 409


@pytest.mark.postgres
def test_core_flow_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    with _store(tmp_path / "store", postgres_url) as (client, container):
        assert container.engine.dialect.name == "postgresql"
        ids = _core_flow(client, container)
        # Entering again opens a fresh session for the same shopper.
        again = _enter(client, 0)
        assert again["admitted"] and again["shopper_id"] == ids["shoppers"][0]
        assert again["session_id"] != ids["session"]
        assert client.get("/checkout/staffed").json() == []


@pytest.mark.postgres
def test_restart_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    _restart_check(tmp_path, postgres_url)


def test_restart_on_sqlite(tmp_path: Path) -> None:
    _restart_check(tmp_path, None)


def test_restart_with_another_key_refuses_to_start(tmp_path: Path) -> None:
    """Templates encrypted under one key are not silently dropped under another."""
    data_dir = tmp_path / "store"
    with _store(data_dir, None) as (client, container):
        _core_flow(client, container)
    key_file = Settings(data_dir=data_dir).resolved_key_file()
    key_file.unlink()
    load_or_create_key_file(key_file, create=True)
    with pytest.raises(TemplateDecryptionError):
        bootstrap(Settings(data_dir=data_dir),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
