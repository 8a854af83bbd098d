"""Property-based: the cart is a function of the set of events; bad input changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cart.errors import InvalidCommand
from cart.event_store import InMemoryEventStore
from cart.events import (
    CartScaleChanged,
    CartScanned,
    DeviceEvent,
    ItemFlagged,
    ItemPicked,
    ItemPutBack,
    WeighedItemAdded,
    from_dict,
    to_dict,
)
from cart.projections import cart_contents
from cart.service import SessionService
from cart.session import MAX_CLOCK_SKEW, RecordItem

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
CODES = ["7038010009457", "4011", "94011", "5000000000011"]


@st.composite
def device_event(draw: st.DrawFn, seq: int) -> DeviceEvent:
    device = draw(st.sampled_from(["cart-1", "cart-2", "plate-9"]))
    at = NOW - timedelta(seconds=draw(st.integers(0, 30)))
    kind = draw(st.sampled_from(["pick", "put", "weigh", "scan", "scale", "flag"]))
    code = draw(st.sampled_from(CODES))
    if kind == "pick":
        return ItemPicked(code, draw(st.integers(1, 3)), device, seq, at, 0.9)
    if kind == "put":
        return ItemPutBack(code, draw(st.integers(1, 3)), device, seq, at, 0.9)
    if kind == "weigh":
        return WeighedItemAdded("4011", draw(st.integers(1, 2000)), device, seq, at, 1.0)
    if kind == "scan":
        return CartScanned(code, device, seq, at)
    if kind == "scale":
        grams = draw(st.integers(-900, 900).filter(lambda g: g != 0))
        return CartScaleChanged(grams, device, seq, at)
    return ItemFlagged("hand_on_shelf", "a hand rested on plate 9", None, device, seq, at)


@st.composite
def noisy_stream(draw: st.DrawFn) -> tuple[list[DeviceEvent], list[DeviceEvent]]:
    """(a valid stream with unique device keys, a permutation of it with repeats)."""
    size = draw(st.integers(0, 25))
    events = [draw(device_event(seq)) for seq in range(size)]
    repeats = draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    delivered = draw(st.permutations(events + repeats))
    return events, delivered


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_stream())
def test_any_permutation_and_duplication_yields_the_same_cart(
    streams: tuple[list[DeviceEvent], list[DeviceEvent]],
) -> None:
    events, delivered = streams
    expected = cart_contents(events)
    assert cart_contents(delivered) == expected
    assert all(qty > 0 for qty in expected.lines.values())
    assert all(line.grams > 0 for line in expected.weighed.values())


@settings(max_examples=40, deadline=None)
@given(noisy_stream(), st.integers(1, 7))
def test_the_service_stores_each_observation_once_whatever_the_delivery(
    streams: tuple[list[DeviceEvent], list[DeviceEvent]], chunk: int
) -> None:
    events, delivered = streams
    service = SessionService(InMemoryEventStore(lambda: NOW), lambda: NOW)
    service.open("s-1", "payer", "store-1", "palm")
    outcomes = []
    for i in range(0, len(delivered), chunk):
        outcomes += service.record_items("s-1", delivered[i : i + chunk])
    assert sum(r.outcome == "recorded" for r in outcomes) == len(events)
    assert sum(r.outcome == "duplicate" for r in outcomes) == len(delivered) - len(events)
    assert service.cart("s-1") == cart_contents(events)


def item(**changes: object) -> RecordItem:
    fields: dict[str, object] = dict(kind="picked", product_code="4011", quantity=1,
                                     device_id="cart-1", device_seq=1,
                                     sensor_time=NOW, confidence=0.9)
    fields.update(changes)
    return RecordItem(**fields)  # type: ignore[arg-type]


MALFORMED = [
    (item(quantity=0), "quantity"),
    (item(quantity=-2), "quantity"),
    (item(quantity=10_000), "quantity"),
    (item(quantity=2.5), "quantity"),
    (item(product_code=""), "product_code"),
    (item(product_code="40 11"), "product_code"),
    (item(product_code="x" * 33), "product_code"),
    (item(device_seq=-1), "device_seq"),
    (item(confidence=1.5), "confidence"),
    (item(kind="stolen"), "kind"),
    (item(sensor_time=NOW.replace(tzinfo=None)), "timezone-aware"),
    (item(sensor_time=NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)), "ahead of the service clock"),
]


@pytest.mark.parametrize(("bad", "reason"), MALFORMED)
def test_malformed_items_are_rejected_with_reasons_and_change_nothing(
    bad: RecordItem, reason: str
) -> None:
    store = InMemoryEventStore(lambda: NOW)
    service = SessionService(store, lambda: NOW)
    service.open("s-1", "payer", "store-1", "palm")
    before = store.since(0, 100)
    with pytest.raises(InvalidCommand, match=reason):
        service.record_item("s-1", bad)
    results = service.record_items("s-1", [bad])
    assert results[0].outcome == "rejected" and reason in (results[0].reason or "")
    assert store.since(0, 100) == before
    # A good item next to a bad one is stored; the bad one is not.
    mixed = service.record_items("s-1", [bad, item(device_seq=7)])
    assert [r.outcome for r in mixed] == ["rejected", "recorded"]


def test_within_the_skew_a_device_clock_ahead_is_accepted() -> None:
    service = SessionService(InMemoryEventStore(lambda: NOW), lambda: NOW)
    service.open("s-1", "payer", "store-1", "palm")
    service.record_item("s-1", item(sensor_time=NOW + MAX_CLOCK_SKEW))
    assert service.cart("s-1").lines == {"4011": 1}


@pytest.mark.parametrize(
    "changes",
    [{"grams": None}, {"code": "4011 "}, {"delta": 1}, {"drop": "device_seq"}, {"grams": 0}],
)
def test_malformed_wire_events_are_refused(changes: dict[str, object]) -> None:
    good = to_dict(WeighedItemAdded("4011", 250, "scale-1", 3, NOW, 1.0))
    bad = dict(good)
    if "drop" in changes:
        del bad[str(changes["drop"])]
    elif "delta" in changes:
        bad["delta"] = 1
    else:
        bad.update(changes)
    with pytest.raises(InvalidCommand):
        from_dict(bad)
    assert from_dict(good) == WeighedItemAdded("4011", 250, "scale-1", 3, NOW, 1.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_stream(), noisy_stream(), st.integers(1, 7))
def test_gateway_flushes_of_several_sessions_store_each_observation_once(
    first: tuple[list[DeviceEvent], list[DeviceEvent]],
    second: tuple[list[DeviceEvent], list[DeviceEvent]],
    chunk: int,
) -> None:
    # Device keys are unique store-wide: the second session's devices are other devices.
    def other(events: list[DeviceEvent]) -> list[DeviceEvent]:
        return [replace(e, device_id=f"b-{e.device_id}") for e in events]

    streams = {"s-1": first, "s-2": (other(second[0]), other(second[1]))}
    service = SessionService(InMemoryEventStore(lambda: NOW), lambda: NOW)
    for session_id in streams:
        service.open(session_id, f"payer-{session_id}", "store-1", "palm")
    outcomes: dict[str, list[str]] = {sid: [] for sid in streams}
    longest = max(len(delivered) for _, delivered in streams.values())
    for i in range(0, longest, chunk):
        flush = {sid: delivered[i : i + chunk] for sid, (_, delivered) in streams.items()}
        for session_id, results in service.record_many(flush).items():
            outcomes[session_id] += [r.outcome for r in results]
    for session_id, (events, delivered) in streams.items():
        assert outcomes[session_id].count("recorded") == len(events)
        assert outcomes[session_id].count("duplicate") == len(delivered) - len(events)
        assert service.cart(session_id) == cart_contents(events)
