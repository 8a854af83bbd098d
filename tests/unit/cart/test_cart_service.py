"""SessionService over the in-memory store: use cases, retries, errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from cart.errors import (
    ConcurrencyConflict,
    DuplicateDeviceEvent,
    InvalidCommand,
    SessionClosed,
    SessionNotFound,
)
from cart.event_store import InMemoryEventStore, StoredEvent
from cart.events import Event, ItemPicked
from cart.projections import FlagReason
from cart.service import SessionService
from cart.session import RecordItem, SessionStatus

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class StepClock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class RacingStore(InMemoryEventStore):
    """A real store where another writer slips in before each of our first ``races`` appends."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.appends = 0

    def append(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> list[StoredEvent]:
        self.appends += 1
        if self.races > 0:
            self.races -= 1
            current = len(self.load(session_id))
            rival = ItemPicked("rival", 1, "rival-cam", self.appends, T0, 1.0)
            super().append(session_id, [rival], expected_version=current)
        return super().append(session_id, events, expected_version=expected_version)


def item(seq: int, kind: str = "picked", code: str = "0001", qty: int = 1) -> RecordItem:
    return RecordItem(kind, code, qty, "plate-1", seq, T0 + timedelta(seconds=seq), 0.9)  # type: ignore[arg-type]


def opened(store: InMemoryEventStore | None = None) -> SessionService:
    service = SessionService(store or InMemoryEventStore(), StepClock())
    service.open("s-1", "shopper-1", "store-1", "palm")
    return service


def test_trip_from_open_to_settled() -> None:
    service = opened()
    stored = service.record_item("s-1", item(1, qty=3))
    assert (stored.version, stored.event) == (
        2,
        ItemPicked("0001", 3, "plate-1", 1, T0 + timedelta(seconds=1), 0.9),
    )
    service.record_item("s-1", item(2, "put_back"))
    assert service.cart("s-1").lines == {"0001": 2}
    state, cart = service.exit("s-1")
    assert state.status is SessionStatus.EXITED and state.version == 4
    assert state.exited_at == T0 + timedelta(seconds=4)  # open, 2 item receipts, exit
    assert cart.lines == {"0001": 2} and cart.flags == []
    settled = service.settle("s-1", "r-1", 598)
    assert settled.status is SessionStatus.SETTLED and settled.total_minor == 598
    assert service.state("s-1") == settled


def test_staffed_flow_and_flags_reach_the_exit_cart() -> None:
    service = opened()
    service.record_item("s-1", item(5, "put_back"))
    state, cart = service.exit("s-1")
    assert [f.reason for f in cart.flags] == [FlagReason.PUT_BACK_NOT_PICKED]
    staffed = service.send_to_staffed("s-1", "review pending")
    assert staffed.status is SessionStatus.STAFFED and staffed.staffed_reason == "review pending"
    assert service.settle("s-1", "r-2", 0).status is SessionStatus.SETTLED


def test_settle_once_takes_a_second_settle_of_the_same_receipt_as_done() -> None:
    service = opened()
    service.exit("s-1")
    first = service.settle_once("s-1", "r-1", 598)
    assert first.status is SessionStatus.SETTLED and first.receipt_id == "r-1"
    assert service.settle_once("s-1", "r-1", 598) == first  # the same fact: no new event
    assert service.state("s-1").version == first.version
    with pytest.raises(InvalidCommand):  # another receipt is not the same fact
        service.settle_once("s-1", "r-2", 598)
    with pytest.raises(InvalidCommand):  # an open session is refused as by settle
        opened().settle_once("s-1", "r-1", 598)


def test_unknown_session_raises_session_not_found() -> None:
    service = SessionService(InMemoryEventStore(), StepClock())
    for call in (
        lambda: service.state("nope"),
        lambda: service.cart("nope"),
        lambda: service.exit("nope"),
        lambda: service.record_item("nope", item(1)),
    ):
        with pytest.raises(SessionNotFound):
            call()


def test_refusals_propagate() -> None:
    service = opened()
    with pytest.raises(InvalidCommand, match="already open"):
        service.open("s-1", "shopper-1", "store-1", "palm")
    with pytest.raises(InvalidCommand, match="settle"):
        service.settle("s-1", "r", 1)
    service.record_item("s-1", item(1))
    with pytest.raises(DuplicateDeviceEvent) as info:
        service.record_item("s-1", item(1))
    assert info.value.same_payload
    with pytest.raises(DuplicateDeviceEvent) as info:
        service.record_item("s-1", item(1, code="0002"))
    assert not info.value.same_payload
    service.exit("s-1")
    with pytest.raises(SessionClosed):
        service.record_item("s-1", item(2))
    assert service.state("s-1").version == 3


def test_lost_race_is_retried_against_the_fresh_log() -> None:
    store = RacingStore(races=0)
    service = opened(store)
    store.races = 2  # two rival writes land just before our first two appends
    stored = service.record_item("s-1", item(1))
    assert store.appends == 1 + 3
    assert stored.version == 4 == len(store.load("s-1"))
    assert service.cart("s-1").lines == {"0001": 1, "rival": 2}


def test_retries_are_bounded() -> None:
    store = RacingStore(races=0)
    service = SessionService(store, StepClock(), max_attempts=2)
    service.open("s-1", "shopper-1", "store-1", "palm")
    store.races = 5
    with pytest.raises(ConcurrencyConflict):
        service.record_item("s-1", item(1))
    assert store.appends == 1 + 2
    assert [s.event.product_code for s in store.load("s-1")[1:]] == ["rival", "rival"]  # type: ignore[union-attr]
    with pytest.raises(InvalidCommand):
        SessionService(store, StepClock(), max_attempts=0)


def test_record_many_stores_each_session_and_rejects_what_cannot_take_items() -> None:
    store = InMemoryEventStore()
    service = opened(store)
    service.open("s-2", "shopper-2", "store-1", "palm")
    service.open("s-3", "shopper-3", "store-1", "palm")
    service.exit("s-3")
    before = {sid: len(store.load(sid)) for sid in ("s-1", "s-2", "s-3")}
    results = service.record_many({
        "s-1": [item(1), item(1), item(2, qty=0)],
        "s-2": [item(3)],
        "s-3": [item(4)],
        "nope": [item(5), item(6)],
    })
    assert [r.outcome for r in results["s-1"]] == ["recorded", "duplicate", "rejected"]
    assert "quantity" in (results["s-1"][2].reason or "")
    # s-2 uses the same device as s-1: its key (plate-1, 3) is new, so it is stored.
    assert [r.outcome for r in results["s-2"]] == ["recorded"]
    assert [(r.outcome, r.index) for r in results["nope"]] == [("rejected", 0), ("rejected", 1)]
    assert "nope" in (results["nope"][0].reason or "")
    assert results["s-3"][0].outcome == "rejected" and results["s-3"][0].stored is None
    after = {sid: len(store.load(sid)) for sid in ("s-1", "s-2", "s-3")}
    assert after == {"s-1": before["s-1"] + 1, "s-2": before["s-2"] + 1, "s-3": before["s-3"]}
    assert service.cart("s-1").lines == {"0001": 1} and service.cart("s-2").lines == {"0001": 1}
    assert service.record_many({}) == {}


def test_record_many_retries_on_a_stale_head_and_loses_nothing() -> None:
    store = InMemoryEventStore()
    writer, other = opened(store), SessionService(store, StepClock())
    writer.open("s-2", "shopper-2", "store-1", "palm")
    writer.record_many({"s-1": [item(1)], "s-2": [item(2)]})  # caches both heads
    other.record_item("s-2", item(3))  # s-2's cached head is now stale
    results = writer.record_many({"s-1": [item(4)], "s-2": [item(5)]})
    assert [r.stored.version for r in results["s-1"] + results["s-2"] if r.stored] == [3, 4]
    assert writer.cart("s-2").lines == {"0001": 3}
    other.exit("s-2")
    results = writer.record_many({"s-1": [item(6)], "s-2": [item(7)]})
    assert results["s-1"][0].outcome == "recorded"
    assert results["s-2"][0].outcome == "rejected" and "exited" in (results["s-2"][0].reason or "")


class CountingStore(InMemoryEventStore):
    """The in-memory store, counting full-log reads and control-event reads."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.control_loads = 0

    def load(self, session_id: str) -> list[StoredEvent]:
        self.loads += 1
        return super().load(session_id)

    def load_control(self, session_id: str) -> tuple[int, list[StoredEvent]]:
        self.control_loads += 1
        return super().load_control(session_id)


def test_close_at_exit_closes_once_then_reports_the_closed_session() -> None:
    store = CountingStore()
    service = opened(store)
    service.record_item("s-1", item(1, qty=2))
    store.loads = 0
    state, cart, closed = service.close_at_exit("s-1")
    assert closed and state.status is SessionStatus.EXITED and state.version == 3
    assert cart.lines == {"0001": 2} and store.loads == 1  # one read of the log
    again, cart_again, closed_again = service.close_at_exit("s-1")
    assert not closed_again and again == state and cart_again.lines == {"0001": 2}
    assert service.state("s-1") == state
    with pytest.raises(SessionNotFound):
        service.close_at_exit("nope")


def test_close_at_exit_retries_a_lost_race() -> None:
    store = RacingStore(races=0)
    service = opened(store)
    store.races = 2  # two rival writes land just before our first two appends
    state, cart, closed = service.close_at_exit("s-1")
    assert closed and state.status is SessionStatus.EXITED and state.version == 4
    assert cart.lines == {"rival": 2}  # both rival events are in the final cart


def test_settle_and_staffed_decide_on_the_head_without_reading_the_log() -> None:
    store = CountingStore()
    service = opened(store)
    service.record_item("s-1", item(1))
    service.close_at_exit("s-1")
    store.loads = store.control_loads = 0
    settled = service.settle("s-1", "r-1", 100)
    assert settled.status is SessionStatus.SETTLED and settled.version == 4
    assert (store.loads, store.control_loads) == (0, 0)  # the remembered head sufficed
    assert service.state("s-1") == settled
    other = SessionService(store, StepClock())
    other.open("s-2", "shopper-2", "store-1", "palm")
    other.record_item("s-2", item(2))
    other.exit("s-2")
    store.loads = store.control_loads = 0
    staffed = other.send_to_staffed("s-2", "check")  # other remembers s-2 after its exit
    assert staffed.status is SessionStatus.STAFFED and store.loads == 0
    cold = SessionService(store, StepClock())  # no remembered head: control events only
    paid = cold.settle("s-2", "r-2", 50)
    assert paid.status is SessionStatus.SETTLED and paid.version == 5
    assert (store.loads, store.control_loads) == (0, 1)


def test_a_stale_remembered_head_is_reloaded_not_trusted() -> None:
    store = InMemoryEventStore()
    ours = opened(store)
    ours.close_at_exit("s-1")  # ours remembers s-1 as exited
    theirs = SessionService(store, StepClock())
    theirs.send_to_staffed("s-1", "sent by another worker")
    # Our head is one version behind: the append conflicts, the head is reloaded.
    settled = ours.settle("s-1", "r-1", 0)
    assert settled.status is SessionStatus.SETTLED and settled.version == 4
    assert ours.state("s-1") == settled
    # A remembered head that refuses the command is checked against the store, whose
    # answer is the one raised.
    ours.open("s-3", "shopper-3", "store-1", "palm")  # ours remembers s-3 as open
    theirs.exit("s-3")
    theirs.settle("s-3", "r-3", 5)
    with pytest.raises(InvalidCommand, match="while settled"):
        ours.send_to_staffed("s-3", "too late")
    with pytest.raises(SessionNotFound):
        ours.settle("nope", "r", 1)
