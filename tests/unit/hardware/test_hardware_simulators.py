"""Smart cart and gate simulators: net baskets, sequences, clocks, determinism."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import pytest

from hardware.messages import ItemEventMessage, encode_message, parse_message
from hardware.simulators import GateSimulator, LossyNetwork, SmartCartSimulator

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
BASKET = [("milk-1l", 2), ("bread", 1), ("apple", 7), ("water-6pk", 1)]
CATALOGUE = ["milk-1l", "bread", "apple", "water-6pk", "chocolate", "beer-0.5l", "soap"]


def net_basket(events: Iterable[ItemEventMessage]) -> Counter[str]:
    """Fold picks minus put-backs per product, dropping products that net to zero."""
    net: Counter[str] = Counter()
    for event in events:
        sign = 1 if event.kind == "picked" else -1
        net[event.product_code] += sign * event.quantity
    return Counter({code: q for code, q in net.items() if q != 0})


def as_counter(basket: Sequence[tuple[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for code, quantity in basket:
        total[code] += quantity
    return total


def test_net_basket_equals_basket_over_many_seeds() -> None:
    saw_put_back = saw_split = saw_foreign = False
    for seed in range(150):
        cart = SmartCartSimulator("cart-1", seed=seed, clock_start=T0)
        events = cart.trip("sess-1", BASKET, put_back_rate=0.5, catalogue_codes=CATALOGUE)
        assert net_basket(events) == as_counter(BASKET)
        picks = [e for e in events if e.kind == "picked"]
        saw_put_back |= len(picks) < len(events)
        saw_split |= len({e.product_code for e in picks}) < len(picks)
        saw_foreign |= any(e.product_code not in dict(BASKET) for e in events)
    assert saw_put_back and saw_split and saw_foreign


def test_running_net_never_goes_negative() -> None:
    cart = SmartCartSimulator("cart-1", seed=11, clock_start=T0)
    for trip in range(30):
        events = cart.trip(f"s{trip}", BASKET, put_back_rate=1.0, catalogue_codes=CATALOGUE)
        running: Counter[str] = Counter()
        for event in events:
            running[event.product_code] += event.quantity * (1 if event.kind == "picked" else -1)
            assert running[event.product_code] >= 0


def test_no_put_backs_at_rate_zero_and_large_lines_are_split() -> None:
    cart = SmartCartSimulator("cart-1", seed=3, clock_start=T0)
    events = cart.trip("s", [("screws", 2500)], put_back_rate=0.0, catalogue_codes=CATALOGUE)
    assert all(e.kind == "picked" and e.quantity <= 999 for e in events)
    assert net_basket(events) == Counter({"screws": 2500})


def test_put_backs_only_from_basket_without_catalogue() -> None:
    cart = SmartCartSimulator("cart-1", seed=4, clock_start=T0)
    events = cart.trip("s", BASKET, put_back_rate=1.0, catalogue_codes=[])
    assert {e.product_code for e in events} == {code for code, _ in BASKET}
    assert sum(e.kind == "put_back" for e in events) == len(BASKET)


def test_seq_and_time_increase_across_trips() -> None:
    start = datetime(2024, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    cart = SmartCartSimulator("cart-1", seed=5, clock_start=start)
    events = cart.trip("a", BASKET, put_back_rate=0.3, catalogue_codes=CATALOGUE)
    events += cart.trip("b", BASKET[:2], put_back_rate=0.3, catalogue_codes=CATALOGUE)
    assert [e.device_seq for e in events] == list(range(len(events)))
    assert cart.next_seq == len(events)
    assert all(e.device_id == "cart-1" for e in events)
    assert {e.session_id for e in events} == {"a", "b"}
    times = [start, *(e.device_time for e in events)]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(timedelta(seconds=1) <= gap <= timedelta(seconds=5) for gap in gaps)
    assert all(e.device_time.tzinfo == UTC for e in events)


def test_cart_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[bytes]:
        cart = SmartCartSimulator("cart-1", seed=seed, clock_start=T0)
        trips = [cart.trip(s, BASKET, put_back_rate=0.4, catalogue_codes=CATALOGUE) for s in "xy"]
        return [encode_message(e) for trip in trips for e in trip]

    assert run(21) == run(21)
    assert run(21) != run(22)


def test_refused_trip_leaves_the_cart_unchanged() -> None:
    cart = SmartCartSimulator("cart-1", seed=6, clock_start=T0)
    twin = SmartCartSimulator("cart-1", seed=6, clock_start=T0)
    with pytest.raises(ValueError):
        cart.trip("s", [("ok", 1), ("bad code!", 1)], put_back_rate=0.5, catalogue_codes=[])
    with pytest.raises(ValueError, match="quantity"):
        cart.trip("s", [("ok", 0)], put_back_rate=0.5, catalogue_codes=[])
    with pytest.raises(ValueError, match="put_back_rate"):
        cart.trip("s", BASKET, put_back_rate=1.5, catalogue_codes=[])
    assert cart.next_seq == 0
    same = cart.trip("s", BASKET, put_back_rate=0.5, catalogue_codes=CATALOGUE)
    assert same == twin.trip("s", BASKET, put_back_rate=0.5, catalogue_codes=CATALOGUE)


def test_naive_clock_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        SmartCartSimulator("cart-1", seed=0, clock_start=datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="timezone"):
        GateSimulator("gate-1", seed=0, clock_start=datetime(2024, 5, 1))


def test_cart_through_lossy_network_still_nets_to_basket_after_dedup() -> None:
    cart = SmartCartSimulator("cart-1", seed=8, clock_start=T0)
    events = cart.trip("s", BASKET, put_back_rate=0.5, catalogue_codes=CATALOGUE)
    network = LossyNetwork(seed=8, duplicate_rate=0.3, reorder_rate=0.3)
    delivery = network.deliver([encode_message(e) for e in events])
    received = [parse_message(raw) for raw in delivery.messages]
    unique = {(m.device_id, m.device_seq): m for m in received}
    items = [m for m in unique.values() if isinstance(m, ItemEventMessage)]
    assert net_basket(items) == as_counter(BASKET)
    assert delivery.duplicates > 0 and delivery.reorders > 0


def test_gate_emits_captures_with_own_sequence_and_clock() -> None:
    gate = GateSimulator("gate-1.palm", seed=9, clock_start=T0, gate_id="gate-1")
    images = [b"img-a", b"img-b", b"img-c"]
    directions: list[Literal["entry", "exit"]] = ["entry", "exit", "entry"]
    captures = [gate.capture(img, way) for img, way in zip(images, directions, strict=True)]
    assert [c.image for c in captures] == images
    assert [c.device_seq for c in captures] == [0, 1, 2]
    assert [c.direction for c in captures] == ["entry", "exit", "entry"]
    assert all(c.gate_id == "gate-1" and c.device_id == "gate-1.palm" for c in captures)
    times = [T0, *(c.device_time for c in captures)]
    assert all(a < b for a, b in zip(times, times[1:], strict=False))
    assert all(parse_message(encode_message(c)) == c for c in captures)
    assert GateSimulator("g", seed=0, clock_start=T0).gate_id == "g"


def test_gate_is_deterministic_and_refuses_bad_images_without_advancing() -> None:
    def run(seed: int) -> list[bytes]:
        gate = GateSimulator("gate-1", seed=seed, clock_start=T0)
        return [encode_message(gate.capture(b"palm", "entry")) for _ in range(5)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    gate = GateSimulator("gate-1", seed=1, clock_start=T0)
    with pytest.raises(ValueError, match="empty"):
        gate.capture(b"", "entry")
    assert gate.next_seq == 0
    assert gate.capture(b"palm", "entry").device_seq == 0
