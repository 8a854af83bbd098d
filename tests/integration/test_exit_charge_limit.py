"""The automatic charge limit at the exit (``STOREFRONT_MAX_EXIT_CHARGE_MINOR``): a cart
whose total is above it is never charged without a person; it goes to the staffed
checkout with the reason and its hold released. Over HTTP, on SQLite only: the rule is
in the exit flow, not in SQL (the exit's PostgreSQL behaviour is tested elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_weighed_units import Shop

from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    processor = SimulatedProcessor(seed=5, decline_rate=0.0)
    settings = Settings(data_dir=tmp_path / "store", database_url=None,
                        max_exit_charge_minor=1_000)
    container = bootstrap(settings, processor=processor)
    with authenticated(TestClient(create_app(container)), container.security,
                       container.settings.store_id) as client:
        shop = Shop(client, container, processor)
        shop.put("/products/TEA", {"code": "TEA", "name": "Tea", "unit_price_minor": 150})
        shop.put("/products/BIG", {"code": "BIG", "name": "Big",
                                   "unit_price_minor": 1_000_000_000})
        yield shop
    container.close()


def test_a_total_up_to_the_limit_is_charged(shop: Shop) -> None:
    sid = shop.session({"TEA": 6})  # 900 p <= 1,000 p
    out = shop.post(f"/sessions/{sid}/exit", None, 200)
    assert (out["status"], out["total_minor"]) == ("paid", 900), out
    assert shop.processor.captured_total() == 900


@pytest.mark.parametrize("picks", [{"TEA": 7}, {"BIG": 3}])
def test_a_total_above_the_limit_goes_to_staff_uncharged(shop: Shop,
                                                         picks: dict[str, int]) -> None:
    sid = shop.session(picks)
    out = shop.post(f"/sessions/{sid}/exit", None, 200)
    assert out["status"] == "staffed" and out["receipt_id"] is None, out
    assert "above the automatic charge limit of 10.00 GBP" in out["reason"]
    assert shop.processor.captured_total() == 0
    queue = shop.client.get("/staff/queue").json()
    assert [e["session_id"] for e in queue] == [sid]
    assert "automatic charge limit" in queue[0]["reason"]
    again = shop.post(f"/sessions/{sid}/exit", None, 200)  # a retried exit: same answer
    assert (again["status"], again["reason"]) == ("staffed", out["reason"])


def test_the_limit_is_a_positive_setting() -> None:
    assert Settings().max_exit_charge_minor == 100_000
    with pytest.raises(ValueError):
        Settings(max_exit_charge_minor=0)
