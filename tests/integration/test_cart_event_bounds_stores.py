"""Device sequence numbers at and beyond the bound through the cart service, on every
event store (memory, SQLite, PostgreSQL): the largest one is stored exactly, a larger one
is refused with InvalidCommand and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cart.errors import InvalidCommand
from cart.event_store import EventStore, InMemoryEventStore
from cart.events import MAX_DEVICE_SEQ, ItemPicked
from cart.service import SessionService
from cart.session import RecordItem
from cart.sql_event_store import SqlEventStore, create_schema, metadata

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore(lambda: T0)
        return
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    else:
        engine = sa.create_engine(request.getfixturevalue("postgres_url"))
        metadata.drop_all(engine)
    create_schema(engine)
    try:
        yield SqlEventStore(engine, clock=lambda: T0)
    finally:
        engine.dispose()


def _service(store: EventStore) -> SessionService:
    service = SessionService(store, lambda: T0 + timedelta(seconds=1))
    service.open("s-1", "shopper-1", "store-1", "palm")
    return service


def _item(seq: int, code: str = "0001") -> RecordItem:
    return RecordItem("picked", code, 1, "plate-1", seq, T0, 1.0)


def test_the_largest_sequence_is_stored_exactly(store: EventStore) -> None:
    service = _service(store)
    service.record_item("s-1", _item(MAX_DEVICE_SEQ))
    service.record_item("s-1", _item(MAX_DEVICE_SEQ - 1, "0002"))
    seqs = [s.event.device_seq for s in store.load("s-1") if isinstance(s.event, ItemPicked)]
    assert seqs == [MAX_DEVICE_SEQ, MAX_DEVICE_SEQ - 1]
    assert all(type(seq) is int for seq in seqs)
    assert service.cart("s-1").lines == {"0001": 1, "0002": 1}


@pytest.mark.parametrize("seq", [MAX_DEVICE_SEQ + 1, 2**63, 2**63 + 1, 10**30], ids=repr)
def test_service_refuses_an_out_of_range_sequence_and_stores_nothing(
    store: EventStore, seq: int
) -> None:
    service = _service(store)
    with pytest.raises(InvalidCommand, match="device_seq"):
        service.record_item("s-1", _item(seq))
    results = service.record_items("s-1", [_item(seq), _item(5, "0002")])
    assert [r.outcome for r in results] == ["rejected", "recorded"]
    assert "device_seq" in (results[0].reason or "")
    assert service.cart("s-1").lines == {"0002": 1}
