"""A shopper is in the store once, whichever gates and processes they enter by.

Two containers on one database stand for the API process and the MQTT gateway process:
their entries of one shopper at the same moment open one session (the entry lock,
``storefront.entry_lock``), on SQLite (a lock file beside the database) and on PostgreSQL
(an advisory lock). A second scan within ``same_entry_s`` of an entry that has recorded
nothing is the same entry; later, or once something was recorded, the session left open
goes to the staffed checkout for review.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clocks import FakeClock

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.entry_lock import EntryBusy, EntryLocks, advisory_key, bucket_of
from storefront.errors import EntryRefused
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings


class SlowHolds(SimulatedProcessor):
    """Holds take a while, as a real processor's network call does: without the entry
    lock both entries are then sure to be between their check and their insert."""

    def authorize(self, *args: Any, **kwargs: Any) -> Any:
        threading.Event().wait(0.3)
        return super().authorize(*args, **kwargs)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def two_processes(tmp_path: Path, database_url: str | None
                  ) -> Iterator[tuple[list[Container], SimulatedProcessor]]:
    processor = SlowHolds(seed=2, decline_rate=0.0)
    made = [bootstrap(Settings(data_dir=tmp_path / "store", database_url=database_url,
                               entry_hold_minor=500), processor=processor)
            for _ in range(2)]
    made[0].catalogue.upsert(builtin_items())
    yield made, processor
    for c in made:
        c.close()


def test_two_gates_at_once_open_one_session(
        two_processes: tuple[list[Container], SimulatedProcessor]) -> None:
    (api, gateway), processor = two_processes
    shopper = api.shoppers.register(display_name="Noa", payment_token="tok_noa").id
    opened: list[str] = []
    start = threading.Barrier(2)

    def enter(c: Container) -> None:
        start.wait()
        opened.append(c.gates.open_session(shopper_id=shopper, entry_method="palm"))

    threads = [threading.Thread(target=enter, args=(c,)) for c in (api, gateway)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 2 and opened[0] == opened[1]
    assert api.read_model.open_of(shopper) == [opened[0]]
    assert api.read_model.with_status("staffed") == []
    assert len(processor.holds()) == 1  # one entry hold placed, not two


def test_a_double_scan_is_the_same_entry_until_something_is_recorded(
        tmp_path: Path) -> None:
    clock = FakeClock()
    c = bootstrap(Settings(data_dir=tmp_path / "store", same_entry_s=60),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0), clock=clock)
    try:
        c.catalogue.upsert(builtin_items())
        code = builtin_items()[0].code
        shopper = c.shoppers.register(display_name="Ari", payment_token="tok_ari").id
        first = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        clock.now += timedelta(seconds=5)
        assert c.gates.open_session(shopper_id=shopper, entry_method="palm") == first
        clock.now += timedelta(seconds=61)  # past the window: a new entry
        second = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        assert second != first
        assert c.read_model.get(first).status == "staffed"
        c.ingest.record(session_id=second, kind="picked", product_code=code, quantity=1,
                        device_id="cart-9", device_seq=1, sensor_time=clock.now)
        clock.now += timedelta(seconds=1)  # within the window, but it recorded an item
        third = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        assert third != second and c.read_model.get(second).status == "staffed"
    finally:
        c.close()


def test_same_entry_zero_opens_a_session_each_time(tmp_path: Path) -> None:
    c = bootstrap(Settings(data_dir=tmp_path / "store", same_entry_s=0),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        shopper = c.shoppers.register(display_name="Bo", payment_token="tok_bo").id
        first = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        second = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        assert first != second and c.read_model.get(first).status == "staffed"
    finally:
        c.close()


def test_a_lock_held_too_long_is_refused_with_the_reason(tmp_path: Path,
                                                         database_url: str | None) -> None:
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database_url),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        other = EntryLocks(c.engine, timeout_s=0.2)  # as another process would
        with c.gates._locks.hold("shp_x"):  # type: ignore[union-attr]
            with pytest.raises(EntryBusy, match="another entry of shopper shp_x"), \
                    other.hold("shp_x"):
                pass
            with other.hold("shp_y"):  # another shopper is not held up
                pass
        with other.hold("shp_x"):  # free again
            pass
    finally:
        c.close()


def test_keys_and_buckets_are_stable() -> None:
    assert advisory_key("shp_a") == advisory_key("shp_a") != advisory_key("shp_b")
    assert -(2**63) <= advisory_key("shp_a") < 2**63
    assert all(0 <= bucket_of(f"shp_{i}") < 256 for i in range(100))


def test_an_empty_session_left_open_is_no_unpaid_balance(tmp_path: Path) -> None:
    """The shopper entered, took nothing and left without an exit; entering again sends
    that session to review, and it never refuses a later entry. A left-open session with
    an item still does, once the grace has passed."""
    clock = FakeClock()
    c = bootstrap(Settings(data_dir=tmp_path / "store", same_entry_s=0, unpaid_grace_s=600),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0), clock=clock)
    try:
        c.catalogue.upsert(builtin_items())
        code = builtin_items()[0].code
        shopper = c.shoppers.register(display_name="Eli", payment_token="tok_eli").id
        empty = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        clock.now += timedelta(minutes=5)
        second = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        view = c.read_model.get(empty)
        assert (view.status, view.total_minor) == ("staffed", 0)
        c.ingest.record(session_id=second, kind="picked", product_code=code, quantity=1,
                        device_id="cart-3", device_seq=1, sensor_time=clock.now)
        clock.now += timedelta(minutes=20)  # past the grace for both
        third = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        assert c.read_model.get(second).status == "staffed"  # it held an item
        clock.now += timedelta(minutes=20)
        with pytest.raises(EntryRefused, match=f"session {second} is still open at the staffed"):
            c.gates.open_session(shopper_id=shopper, entry_method="palm")
        assert third != second
    finally:
        c.close()


def test_many_shoppers_entering_at_once_do_not_starve_the_database_pool(
        two_processes: tuple[list[Container], SimulatedProcessor]) -> None:
    """20 entries of 20 shoppers at once, each holding its lock across a slow hold: more
    than the service's pool (5 + 10) could hold; the locks use connections of their own."""
    (api, _), processor = two_processes
    shoppers = [api.shoppers.register(display_name=f"S{i}", payment_token=f"tok_{i}").id
                for i in range(20)]
    start = threading.Barrier(len(shoppers))
    opened: dict[str, str] = {}
    errors: list[BaseException] = []

    def enter(shopper: str) -> None:
        start.wait()
        try:
            opened[shopper] = api.gates.open_session(shopper_id=shopper, entry_method="palm")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=enter, args=(s,)) for s in shoppers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(opened.values())) == 20
    assert len(processor.holds()) == 20
