"""Devices and services of one store never touch a session of another store that shares
the database: item events, the exit and the session read answer 'not found' for it, and a
missed exit (the shopper entered again) still closes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.errors import NotFound
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[Container, Container]]:
    processor = SimulatedProcessor(seed=4, decline_rate=0.0)
    here = bootstrap(Settings(data_dir=tmp_path / "db", store_id="here"), processor=processor)
    there = bootstrap(Settings(data_dir=tmp_path / "db", store_id="there"),
                      processor=processor)
    here.catalogue.upsert(builtin_items())
    yield here, there
    here.close()
    there.close()


def test_a_session_of_another_store_is_not_found_here(
        two_stores: tuple[Container, Container]) -> None:
    here, there = two_stores
    code = builtin_items()[0].code
    shopper = there.shoppers.register(display_name="Ola", payment_token="tok_ola").id
    theirs = there.gates.open_session(shopper_id=shopper, entry_method="palm")
    now = datetime.now(UTC)
    with pytest.raises(NotFound, match="in this store"):
        here.ingest.record(session_id=theirs, kind="picked", product_code=code, quantity=1,
                           device_id="cart-1", device_seq=1, sensor_time=now)
    with pytest.raises(NotFound, match="in this store"):
        here.checkout.exit(theirs)
    assert not here.carts.cart(theirs).lines  # nothing recorded, nothing charged
    assert here.read_model.get(theirs).status == "open"
    there.ingest.record(session_id=theirs, kind="picked", product_code=code, quantity=1,
                        device_id="cart-1", device_seq=1, sensor_time=now)
    assert there.checkout.exit(theirs).status == "paid"


def test_an_unknown_session_is_still_not_found(two_stores: tuple[Container, Container]) -> None:
    here, _ = two_stores
    with pytest.raises(NotFound):
        here.checkout.exit("ses_nobody")


def test_the_same_entry_rule_keeps_to_its_store(two_stores: tuple[Container, Container]) -> None:
    """Entering here seconds after entering there is a new entry here, not 'there''s'
    session, which this store could not use."""
    here, there = two_stores
    shopper = there.shoppers.register(display_name="Pia", payment_token="tok_pia").id
    theirs = there.gates.open_session(shopper_id=shopper, entry_method="palm")
    ours = here.gates.open_session(shopper_id=shopper, entry_method="palm")
    assert ours != theirs
    here.ingest.record(session_id=ours, kind="picked", product_code=builtin_items()[0].code,
                       quantity=1, device_id="cart-2", device_seq=1,
                       sensor_time=datetime.now(UTC))


def test_each_store_lists_only_its_own_staffed_sessions(
        two_stores: tuple[Container, Container]) -> None:
    here, there = two_stores
    shopper = there.shoppers.register(display_name="Rui", payment_token="tok_rui").id
    theirs = there.gates.open_session(shopper_id=shopper, entry_method="palm")
    there.carts.send_to_staffed(theirs, "test")
    there.read_model.update(theirs, status="staffed", staffed_reason="test")
    assert [row["id"] for row in there.checkout.staffed_queue()] == [theirs]
    assert here.checkout.staffed_queue() == []
    assert here.staffed.queue() == []
    assert [view.id for view, _ in there.staffed.queue()] == [theirs]
    with pytest.raises(NotFound, match="in this store"):
        here.staffed.claim(session_id=theirs, staff_id="ann")
    assert there.staffed.claim(session_id=theirs, staff_id="bo").staff_id == "bo"
