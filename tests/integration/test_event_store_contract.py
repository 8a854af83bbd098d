"""One contract for every EventStore: in memory, SQL on SQLite, SQL on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cart.errors import ConcurrencyConflict, DuplicateDeviceEvent, InvalidCommand
from cart.event_store import EventStore, InMemoryEventStore, SessionBatch, StoredEvent
from cart.events import Event, ItemPicked, ItemPutBack, SessionExited, SessionOpened
from cart.sql_event_store import SqlEventStore, create_schema, metadata

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
# The clock reads in +02:00 to prove every store hands back UTC.
RECORDED = datetime(2024, 5, 1, 11, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))


def clock() -> datetime:
    return RECORDED


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore(clock)
        return
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    else:
        engine = sa.create_engine(request.getfixturevalue("postgres_url"))
        metadata.drop_all(engine)  # the database lives for the run; each test starts empty
    create_schema(engine)
    try:
        yield SqlEventStore(engine, clock=clock)
    finally:
        engine.dispose()


def opened(session_id: str) -> SessionOpened:
    return SessionOpened(session_id, "shopper-1", "store-1", "palm", T0)


def picked(seq: int, code: str = "0001", device: str = "plate-1") -> ItemPicked:
    return ItemPicked(code, 1, device, seq, T0 + timedelta(seconds=seq), 0.75)


def events_of(stored: list[StoredEvent]) -> list[Event]:
    return [s.event for s in stored]


def test_append_then_load_round_trips(store: EventStore) -> None:
    batch: list[Event] = [opened("s-1"), picked(1), ItemPutBack("0001", 1, "cam-2", 7, T0, 0.5)]
    stored = store.append("s-1", batch, expected_version=0)
    assert [s.version for s in stored] == [1, 2, 3]
    assert [s.session_id for s in stored] == ["s-1"] * 3
    assert stored[0].position < stored[1].position < stored[2].position
    loaded = store.load("s-1")
    assert loaded == stored
    assert events_of(loaded) == batch
    for s in loaded:
        assert s.recorded_at == RECORDED and s.recorded_at.utcoffset() == timedelta(0)
    more = store.append("s-1", [SessionExited(T0)], expected_version=3)
    assert [s.version for s in more] == [4]
    assert events_of(store.load("s-1")) == [*batch, SessionExited(T0)]


def test_unknown_session_loads_empty(store: EventStore) -> None:
    assert store.load("nobody") == []
    assert store.since(0, 10) == []


def test_wrong_expected_version_conflicts_and_stores_nothing(store: EventStore) -> None:
    store.append("s-1", [opened("s-1")], expected_version=0)
    for expected in (0, 2, 7):
        with pytest.raises(ConcurrencyConflict) as info:
            store.append("s-1", [picked(1)], expected_version=expected)
        assert (info.value.expected_version, info.value.actual_version) == (expected, 1)
    with pytest.raises(ConcurrencyConflict):
        store.append("s-2", [opened("s-2")], expected_version=1)
    assert len(store.load("s-1")) == 1 and store.load("s-2") == []


def test_duplicate_device_event_tells_replay_from_conflicting_reuse(store: EventStore) -> None:
    store.append("s-1", [opened("s-1"), picked(1)], expected_version=0)
    with pytest.raises(DuplicateDeviceEvent) as replay:
        store.append("s-1", [picked(1)], expected_version=2)
    assert (replay.value.device_id, replay.value.device_seq) == ("plate-1", 1)
    assert replay.value.same_payload is True
    store.append("s-2", [opened("s-2")], expected_version=0)
    with pytest.raises(DuplicateDeviceEvent) as reuse:  # another session, other product
        store.append("s-2", [picked(1, code="0002")], expected_version=1)
    assert reuse.value.same_payload is False
    # The same sequence number on another device is a different observation.
    store.append("s-2", [picked(1, device="plate-2")], expected_version=1)
    assert [s.version for s in store.load("s-1")] == [1, 2]
    assert [s.version for s in store.load("s-2")] == [1, 2]


def test_batch_is_atomic(store: EventStore) -> None:
    store.append("s-1", [opened("s-1"), picked(1)], expected_version=0)
    before = store.since(0, 100)
    with pytest.raises(DuplicateDeviceEvent):
        store.append("s-1", [picked(2), picked(3), picked(1)], expected_version=2)
    with pytest.raises(DuplicateDeviceEvent) as within:
        store.append("s-1", [picked(4), picked(4, code="x")], expected_version=2)
    assert within.value.same_payload is False
    with pytest.raises(InvalidCommand):
        store.append("s-1", [picked(5), opened("someone-else")], expected_version=2)
    assert store.since(0, 100) == before
    # The refused device keys were not stored either.
    stored = store.append("s-1", [picked(2), picked(3), picked(4)], expected_version=2)
    assert [s.version for s in stored] == [3, 4, 5]


def test_global_feed_is_in_position_order_and_pages(store: EventStore) -> None:
    appended: list[StoredEvent] = []
    appended += store.append("a", [opened("a")], expected_version=0)
    appended += store.append("b", [opened("b"), picked(1, device="d-b")], expected_version=0)
    appended += store.append("a", [picked(1, device="d-a")], expected_version=1)
    appended += store.append("b", [SessionExited(T0)], expected_version=2)
    feed = store.since(0, 100)
    assert feed == appended
    positions = [s.position for s in feed]
    assert positions == sorted(positions) and len(set(positions)) == 5
    first, second = store.since(0, 2), store.since(positions[1], 2)
    assert first == feed[:2] and second == feed[2:4]
    assert store.since(positions[-1], 10) == []
    for bad in ((-1, 10), (0, 0)):
        with pytest.raises(InvalidCommand):
            store.since(*bad)


def test_empty_batch_and_invalid_arguments(store: EventStore) -> None:
    assert store.append("s-1", [], expected_version=0) == []
    with pytest.raises(ConcurrencyConflict):
        store.append("s-1", [], expected_version=1)
    for session_id, expected in (("", 0), ("x" * 65, 0), ("s-1", -1)):
        with pytest.raises(InvalidCommand):
            store.append(session_id, [opened("s-1")], expected_version=expected)
    assert store.since(0, 10) == []


def race(store: EventStore, version: int, seq: int) -> dict[str, str]:
    """Two threads append with the same expected ``version`` at once; name -> outcome."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def write(name: str) -> None:
        barrier.wait()
        try:
            store.append("s-1", [picked(seq, device=name)], expected_version=version)
            outcomes[name] = "won"
        except ConcurrencyConflict:
            outcomes[name] = "conflict"

    threads = [threading.Thread(target=write, args=(name,)) for name in ("w-1", "w-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_two_writers_with_the_same_expected_version_exactly_one_wins(store: EventStore) -> None:
    store.append("s-1", [opened("s-1")], expected_version=0)
    for round_ in range(10):
        version = len(store.load("s-1"))
        outcomes = race(store, version, round_)
        assert sorted(outcomes.values()) == ["conflict", "won"]
        log = store.load("s-1")
        assert len(log) == version + 1
        winner = next(name for name, result in outcomes.items() if result == "won")
        assert log[-1].event == picked(round_, device=winner)


def test_append_batch_skips_and_reports_duplicates(store: EventStore) -> None:
    store.append("s-1", [opened("s-1"), picked(1)], expected_version=0)
    batch: list[Event] = [picked(2), picked(1), picked(3), picked(2), picked(3, code="x")]
    result = store.append_batch("s-1", batch, expected_version=2)
    assert events_of(result.stored) == [picked(2), picked(3)]
    assert [s.version for s in result.stored] == [3, 4]
    assert [(d.device_seq, d.same_payload) for d in result.duplicates] == [
        (1, True), (2, True), (3, False)]
    with pytest.raises(ConcurrencyConflict):
        store.append_batch("s-1", [picked(9)], expected_version=2)
    only_dupes = store.append_batch("s-1", [picked(1)], expected_version=4)
    assert only_dupes.stored == [] and len(only_dupes.duplicates) == 1
    assert len(store.load("s-1")) == 4


def test_load_control_returns_version_and_non_device_events(store: EventStore) -> None:
    assert store.load_control("nobody") == (0, [])
    stored = store.append("s-1", [opened("s-1"), picked(1), picked(2)], expected_version=0)
    more = store.append("s-1", [SessionExited(T0)], expected_version=3)
    version, control = store.load_control("s-1")
    assert version == 4 and control == [stored[0], more[0]]


def test_idle_sessions_lists_active_sessions_idle_before_a_time(store: EventStore) -> None:
    store.append("a", [opened("a")], expected_version=0)
    store.append("b", [opened("b"), SessionExited(T0)], expected_version=0)
    later = RECORDED + timedelta(seconds=1)
    assert store.idle_sessions(later, 10) == ["a"]
    assert store.idle_sessions(RECORDED, 10) == []
    with pytest.raises(InvalidCommand):
        store.idle_sessions(later, 0)


def test_two_threads_writing_one_session_lose_no_event(store: EventStore) -> None:
    from cart.service import SessionService

    store.append("s-1", [opened("s-1")], expected_version=0)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(device: str) -> None:
        service = SessionService(store, lambda: T0 + timedelta(hours=1), max_attempts=50)
        barrier.wait()
        try:
            for seq in range(0, 40, 4):
                batch = [picked(s, device=device) for s in range(seq, seq + 4)]
                results = service.record_items("s-1", batch + batch[:1])
                assert [r.outcome for r in results] == ["recorded"] * 4 + ["duplicate"]
        except BaseException as exc:  # surfaced to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(d,)) for d in ("cart-1", "cart-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    log = store.load("s-1")
    assert [s.version for s in log] == list(range(1, 82))
    keys = {(e.device_id, e.device_seq) for e in events_of(log) if isinstance(e, ItemPicked)}
    assert keys == {(d, s) for d in ("cart-1", "cart-2") for s in range(40)}


def test_append_many_stores_several_sessions_in_one_call(store: EventStore) -> None:
    store.append("s-1", [opened("s-1")], expected_version=0)
    start = store.since(0, 10)[-1].position
    results = store.append_many([
        SessionBatch("s-1", [picked(1, device="d-1"), picked(2, device="d-1")], 1),
        SessionBatch("s-2", [opened("s-2"), picked(1, device="d-1"), picked(1, device="d-2")], 0),
    ])
    assert [events_of(r.stored) for r in results] == [
        [picked(1, device="d-1"), picked(2, device="d-1")],
        [opened("s-2"), picked(1, device="d-2")]]
    dup = [(d.device_id, d.device_seq, d.same_payload) for r in results for d in r.duplicates]
    assert dup == [("d-1", 1, True)] and results[0].duplicates == []
    assert [s.version for r in results for s in r.stored] == [2, 3, 1, 2]
    feed = store.since(start, 100)
    assert feed == [s for r in results for s in r.stored]
    positions = [s.position for s in feed]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert store.load("s-2") == results[1].stored
    assert store.append_many([]) == []


def test_append_many_is_all_or_nothing(store: EventStore) -> None:
    store.append("s-1", [opened("s-1")], expected_version=0)
    store.append("s-2", [opened("s-2")], expected_version=0)
    before = store.since(0, 100)
    with pytest.raises(ConcurrencyConflict) as stale:
        store.append_many([SessionBatch("s-1", [picked(1)], 1),
                           SessionBatch("s-2", [picked(2)], 0)])
    assert (stale.value.session_id, stale.value.actual_version) == ("s-2", 1)
    with pytest.raises(InvalidCommand):
        store.append_many([SessionBatch("s-1", [picked(1)], 1),
                           SessionBatch("s-1", [picked(2)], 1)])
    with pytest.raises(InvalidCommand):
        store.append_many([SessionBatch("s-1", [picked(1)], 1),
                           SessionBatch("s-2", [opened("s-3")], 1)])
    assert store.since(0, 100) == before
    done = store.append_many([SessionBatch("s-1", [picked(1)], 1), SessionBatch("s-2", [], 1)])
    assert [len(r.stored) for r in done] == [1, 0]


def test_two_gateways_flushing_the_same_sessions_lose_no_event(store: EventStore) -> None:
    from cart.service import SessionService

    sessions = ["s-1", "s-2", "s-3"]
    for session_id in sessions:
        store.append(session_id, [opened(session_id)], expected_version=0)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def flush(gateway: str) -> None:
        service = SessionService(store, lambda: T0 + timedelta(hours=1), max_attempts=50)
        barrier.wait()
        try:
            for seq in range(0, 30, 3):
                batches = {sid: [picked(s, device=f"{gateway}-{sid}") for s in range(seq, seq + 3)]
                           for sid in sessions}
                batches["s-2"].append(batches["s-2"][0])  # a re-sent observation
                results = service.record_many(batches)
                assert [r.outcome for r in results["s-2"]] == ["recorded"] * 3 + ["duplicate"]
        except BaseException as exc:  # surfaced to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(g,)) for g in ("gw-1", "gw-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for session_id in sessions:
        log = store.load(session_id)
        assert [s.version for s in log] == list(range(1, 62))
        keys = {(e.device_id, e.device_seq) for e in events_of(log) if isinstance(e, ItemPicked)}
        assert keys == {(f"{g}-{session_id}", s) for g in ("gw-1", "gw-2") for s in range(30)}
    positions = [s.position for s in store.since(0, 1000)]
    assert positions == sorted(positions) and len(positions) == 3 * 61


def test_payload_numbers_round_trip_exactly(store: EventStore) -> None:
    odd = [ItemPicked("0001", 1, "d-1", 2**53 + 1, T0, 0.1 + 0.2),
           ItemPutBack("0001", 1, "d-1", 2, T0, 5e-324)]
    store.append_many([SessionBatch("s-1", [opened("s-1"), *odd], 0)])
    assert events_of(store.load("s-1"))[1:] == odd
    assert events_of(store.since(0, 10))[1:] == odd
