"""A cart's ``sensor_time`` far in the future over signed HTTP: more than
``device_max_future_skew_s`` ahead of the service's injected clock is 422
``device_time_in_future`` and nothing is stored (so it cannot sort after the exit); just
inside the bound, and any late time, is accepted as before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

TICK = timedelta(microseconds=1)
Store = tuple[TestClient, Container, datetime]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Stores whose clock stands still at the moment they are built (the device signatures,
    made on the wall clock, stay inside their 120 s window); ``settings`` go to
    :class:`Settings`."""
    opened: list[tuple[TestClient, Container]] = []

    def build(**settings: Any) -> Store:
        now = datetime.now(UTC)
        c = bootstrap(Settings(data_dir=tmp_path / f"store{len(opened)}", **settings),
                      processor=SimulatedProcessor(seed=7, decline_rate=0.0),
                      clock=lambda: now)
        client = authenticated(TestClient(create_app(c)), c.security, c.settings.store_id)
        client.__enter__()
        opened.append((client, c))
        r = client.put("/products/APPLE-1", json={"code": "APPLE-1", "name": "Apple",
                                                  "unit_price_minor": 35})
        assert r.status_code == 200, r.text
        return client, c, now

    yield build
    for client, c in reversed(opened):
        client.__exit__(None, None, None)
        c.close()


def _session(c: Container) -> str:
    shopper = c.shoppers.register(display_name="Dana", payment_token="tok_dana")
    return str(c.gates.open_session(shopper_id=shopper.id, entry_method="app"))


def _send(client: TestClient, session: str, seq: int, at: datetime) -> Any:
    return client.post(f"/sessions/{session}/events", json={
        "kind": "picked", "product_code": "APPLE-1", "quantity": 1, "device_id": "cart-9",
        "device_seq": seq, "sensor_time": at.isoformat(), "confidence": 1.0})


def _error(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "reason"}
    return body


def test_just_inside_the_bound_is_stored_just_beyond_it_is_refused(
        make: Callable[..., Store]) -> None:
    client, c, now = make()
    # The clock stands still at ``now`` while the wall clock runs on: a check against the
    # wall clock would accept ``now + bound + TICK`` (less than ``bound`` ahead of it).
    bound = timedelta(seconds=c.settings.device_max_future_skew_s)
    session = _session(c)
    assert _send(client, session, 1, now + bound).status_code == 201
    error = _error(_send(client, session, 2, now + bound + TICK))
    assert error["error"] == "device_time_in_future"
    assert "sensor_time is 300.000 s ahead of the server clock" in error["reason"]
    assert c.carts.cart(session).lines == {"APPLE-1": 1}
    assert c.carts.state(session).item_event_count == 1  # nothing of seq 2 stored
    # (device, seq) was not spent: the same seq with a sound time is accepted.
    assert _send(client, session, 2, now).status_code == 201
    assert c.carts.cart(session).lines == {"APPLE-1": 2}


def test_a_future_event_cannot_land_after_the_exit(make: Callable[..., Store]) -> None:
    client, c, now = make()
    session = _session(c)
    error = _error(_send(client, session, 1, now + timedelta(hours=2)))
    assert error["error"] == "device_time_in_future"
    assert c.carts.state(session).item_event_count == 0
    assert client.post(f"/sessions/{session}/exit").json()["total_minor"] == 0


def test_late_times_stay_accepted(make: Callable[..., Store]) -> None:
    client, c, now = make()
    session = _session(c)
    assert _send(client, session, 1, now - timedelta(days=3)).status_code == 201
    assert c.carts.cart(session).lines == {"APPLE-1": 1}


def test_the_bound_follows_the_setting(make: Callable[..., Store]) -> None:
    client, c, now = make(device_max_future_skew_s=30)
    session = _session(c)
    assert _send(client, session, 1, now + timedelta(seconds=30)).status_code == 201
    error = _error(_send(client, session, 2, now + timedelta(seconds=30) + TICK))
    assert (error["error"], "at most 30 s allowed" in error["reason"]) == (
        "device_time_in_future", True)
    assert c.carts.state(session).item_event_count == 1


@pytest.mark.parametrize("seconds", [-1.0, 300.001])
def test_the_setting_is_bounded_by_the_carts_own_limit(tmp_path: Path, seconds: float) -> None:
    """Above 300 s the cart itself would still refuse item events, so a larger setting
    would promise what the service does not do; a negative one would refuse the present."""
    with pytest.raises(ValueError, match="device_max_future_skew_s"):
        Settings(data_dir=tmp_path, device_max_future_skew_s=seconds)
