"""Cart projection: sensor order, not arrival order; put-back anomalies are flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cart.errors import InvalidCommand
from cart.events import (
    Event,
    ItemEvent,
    ItemPicked,
    ItemPutBack,
    SessionExited,
    SessionOpened,
    WeighedItemAdded,
)
from cart.projections import CartContents, CartFlag, FlagReason, cart_contents

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def picked(code: str, qty: int, seq: int, t: int, device: str = "plate-1") -> ItemPicked:
    return ItemPicked(code, qty, device, seq, at(t), 0.9)


def put_back(code: str, qty: int, seq: int, t: int, device: str = "plate-1") -> ItemPutBack:
    return ItemPutBack(code, qty, device, seq, at(t), 0.9)


def test_empty_and_non_item_events_give_empty_cart() -> None:
    events: list[Event] = [SessionOpened("s", "p", "st", "palm", T0), SessionExited(at(60))]
    assert cart_contents(events) == CartContents({}, [])
    assert not cart_contents([]).needs_review


def test_picks_and_put_backs_sum_per_product() -> None:
    cart = cart_contents(
        [picked("a", 2, 1, 1), picked("b", 1, 2, 2), put_back("a", 1, 3, 3), picked("a", 4, 4, 4)]
    )
    assert cart.lines == {"a": 5, "b": 1}
    assert cart.flags == []


def test_fully_returned_product_leaves_no_line() -> None:
    cart = cart_contents([picked("a", 2, 1, 1), put_back("a", 2, 2, 5)])
    assert cart.lines == {} and cart.flags == []


def test_put_back_arriving_before_its_pick_is_ordered_by_sensor_time() -> None:
    # The put-back (sensor t=10) is delivered before the pick (sensor t=5).
    arrival: list[Event] = [put_back("a", 1, 8, 10, "cart-3"), picked("a", 1, 2, 5, "plate-1")]
    cart = cart_contents(arrival)
    assert cart.lines == {} and cart.flags == []


def test_put_back_before_any_pick_is_flagged_and_never_negative() -> None:
    cart = cart_contents([picked("a", 1, 2, 20), put_back("a", 1, 1, 10)])
    assert cart.lines == {"a": 1}
    assert cart.flags == [CartFlag(FlagReason.PUT_BACK_NOT_PICKED, "a", "plate-1", 1)]


def test_put_back_of_more_than_picked_is_flagged_and_clamped() -> None:
    cart = cart_contents([picked("a", 2, 1, 1), put_back("a", 5, 2, 2), picked("a", 1, 3, 3)])
    assert cart.lines == {"a": 1}
    assert cart.flags == [CartFlag(FlagReason.PUT_BACK_EXCEEDS_PICKED, "a", "plate-1", 2)]


def test_same_sensor_time_is_broken_by_device_then_sequence() -> None:
    # Both at t=5: "cam-1" < "plate-1", so the pick is first and nothing is flagged.
    cart = cart_contents([put_back("a", 1, 1, 5, "plate-1"), picked("a", 1, 9, 5, "cam-1")])
    assert cart.lines == {} and cart.flags == []
    # Same device and time: sequence decides; put-back (seq 1) precedes pick (seq 2).
    cart = cart_contents([picked("a", 1, 2, 5), put_back("a", 1, 1, 5)])
    assert cart.lines == {"a": 1}
    assert [f.reason for f in cart.flags] == [FlagReason.PUT_BACK_NOT_PICKED]


def test_low_confidence_events_are_flagged_and_left_out() -> None:
    unsure = ItemPicked("a", 1, "cam-2", 7, at(3), 0.4)
    cart = cart_contents([picked("a", 1, 1, 1), unsure], min_confidence=0.5)
    assert cart.lines == {"a": 1}
    assert cart.flags == [CartFlag(
        FlagReason.LOW_CONFIDENCE, "a", "cam-2", 7,
        "picked 1 x a at confidence 0.4 (below the 0.5 threshold): left out of the cart "
        "until staff decide")]
    assert cart_contents([unsure]).lines == {"a": 1}  # the default threshold keeps all
    with pytest.raises(InvalidCommand):
        cart_contents([], min_confidence=1.5)


def test_a_low_confidence_flag_says_what_the_event_was_and_that_it_is_not_counted() -> None:
    events: list[Event] = [picked("a", 2, 1, 1), ItemPutBack("a", 1, "cam-2", 2, at(2), 0.25),
                           WeighedItemAdded("2012345", 350, "scale-1", 3, at(3), 0.1)]
    cart = cart_contents(events, min_confidence=0.5)
    assert cart.lines == {"a": 2} and cart.weighed == {}
    assert [f.detail for f in cart.flags] == [
        "put back 1 x a at confidence 0.25 (below the 0.5 threshold): not taken off the "
        "cart until staff decide",
        "weighed 350 g of 2012345 at confidence 0.1 (below the 0.5 threshold): left out of "
        "the cart until staff decide"]


def test_duplicate_device_keys_count_once_and_conflicts_are_flagged() -> None:
    first = picked("a", 1, 1, 1)
    assert cart_contents([first, first]).lines == {"a": 1}
    reuse = picked("b", 3, 1, 1)  # same plate-1 / seq 1, other content
    cart = cart_contents([first, reuse])
    # Identical device keys tie on sensor order; content breaks the tie, so "a" wins.
    assert cart.lines == {"a": 1}
    assert [f.reason for f in cart.flags] == [FlagReason.CONFLICTING_DUPLICATE]
    assert cart == cart_contents([reuse, first])


@st.composite
def item_histories(draw: st.DrawFn) -> list[ItemEvent]:
    """Item events with unique device keys, few products and many sensor-time ties."""
    size = draw(st.integers(min_value=0, max_value=25))
    events: list[ItemEvent] = []
    for seq in range(size):
        cls: type[ItemPicked] | type[ItemPutBack] = ItemPicked
        if draw(st.booleans()):
            cls = ItemPutBack
        events.append(
            cls(
                product_code=draw(st.sampled_from(["a", "b", "c"])),
                quantity=draw(st.integers(min_value=1, max_value=4)),
                device_id=draw(st.sampled_from(["cam-1", "cart-2", "plate-3"])),
                device_seq=seq,
                sensor_time=at(draw(st.integers(min_value=0, max_value=8))),
                confidence=draw(st.floats(min_value=0.0, max_value=1.0)),
            )
        )
    return events


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=item_histories())
def test_any_permutation_gives_the_same_cart(data: st.DataObject, events: list[ItemEvent]) -> None:
    shuffled = data.draw(st.permutations(events))
    threshold = data.draw(st.sampled_from([0.0, 0.5]))
    expected = cart_contents(events, min_confidence=threshold)
    assert cart_contents(shuffled, min_confidence=threshold) == expected
    assert all(qty > 0 for qty in expected.lines.values())


@settings(max_examples=200, deadline=None)
@given(events=item_histories())
def test_lines_never_exceed_picked_units(events: list[ItemEvent]) -> None:
    cart = cart_contents(events)
    for code, qty in cart.lines.items():
        assert qty <= sum(
            e.quantity for e in events if isinstance(e, ItemPicked) and e.product_code == code
        )
    put_backs = sum(isinstance(e, ItemPutBack) for e in events)
    assert len(cart.flags) <= put_backs
