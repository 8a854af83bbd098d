"""Integer fields of device events are bounded in the cart library itself, so a value
out of range is a typed InvalidCommand on construction, never a lossy or failing write.

``device_seq`` shares the HTTP/MQTT bound (0..2**62); quantities, grams and label prices
have their own. The stores are exercised at the bound to prove the key is stored
exactly (SQLite stored 2**63 as REAL before the bound; PostgreSQL overflowed BIGINT).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cart.errors import InvalidCommand
from cart.events import (
    MAX_DEVICE_SEQ,
    MAX_GRAMS,
    MAX_LABEL_PRICE_MINOR,
    MAX_QUANTITY,
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
from cart.session import RecordDeviceEvent

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

DEVICE_EVENTS: dict[str, Callable[[int], DeviceEvent]] = {
    "picked": lambda seq: ItemPicked("0001", 1, "plate-1", seq, T0, 0.9),
    "put_back": lambda seq: ItemPutBack("0001", 1, "plate-1", seq, T0, 0.9),
    "weighed": lambda seq: WeighedItemAdded("4011", 250, "scale-1", seq, T0, 1.0),
    "scanned": lambda seq: CartScanned("4011", "cart-1", seq, T0),
    "scale": lambda seq: CartScaleChanged(250, "cart-1", seq, T0),
    "flagged": lambda seq: ItemFlagged("weight_without_scan", "x", None, "cart-1", seq, T0),
}

BAD_SEQS: list[Any] = [
    -1, MAX_DEVICE_SEQ + 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64, 10**30, -(2**63) - 1,
    1.0, "7", True, None,
]


def test_the_bound_is_the_one_of_the_http_and_mqtt_boundaries() -> None:
    from hardware.messages import MAX_DEVICE_SEQ as WIRE_MAX

    assert MAX_DEVICE_SEQ == WIRE_MAX == 2**62
    assert MAX_DEVICE_SEQ < 2**63 - 1  # inside a signed BIGINT


@pytest.mark.parametrize("make", DEVICE_EVENTS.values(), ids=list(DEVICE_EVENTS))
@pytest.mark.parametrize("seq", [0, 1, MAX_DEVICE_SEQ])
def test_device_seq_within_bounds_is_accepted(make: Callable[[int], DeviceEvent], seq: int) -> None:
    assert make(seq).device_seq == seq


@pytest.mark.parametrize("make", DEVICE_EVENTS.values(), ids=list(DEVICE_EVENTS))
@pytest.mark.parametrize("seq", BAD_SEQS, ids=repr)
def test_device_seq_out_of_bounds_is_invalid(make: Callable[[int], DeviceEvent], seq: Any) -> None:
    with pytest.raises(InvalidCommand, match="device_seq"):
        make(seq)


@pytest.mark.parametrize("seq", [MAX_DEVICE_SEQ + 1, 2**63, 10**30])
def test_a_stored_payload_out_of_bounds_is_refused(seq: int) -> None:
    data = to_dict(DEVICE_EVENTS["picked"](1)) | {"device_seq": seq}
    with pytest.raises(InvalidCommand, match="device_seq"):
        from_dict(data)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda v: ItemPicked("0001", v, "d", 1, T0, 1.0), "quantity"),
        (lambda v: ItemPutBack("0001", v, "d", 1, T0, 1.0), "quantity"),
        (lambda v: WeighedItemAdded("4011", v, "d", 1, T0, 1.0), "grams"),
        (lambda v: WeighedItemAdded("4011", 100, "d", 1, T0, 1.0, v), "label_price_minor"),
        (lambda v: CartScaleChanged(v, "d", 1, T0), "delta_grams"),
    ],
    ids=["picked-quantity", "put-back-quantity", "grams", "label-price", "delta-grams"],
)
@pytest.mark.parametrize("value", [2**62 + 1, 2**63, 2**64, 10**30, -(2**63) - 1], ids=repr)
def test_other_integer_fields_cannot_overflow(
    build: Callable[[int], object], field: str, value: int
) -> None:
    with pytest.raises(InvalidCommand, match=field):
        build(value)


def test_other_integer_fields_at_their_bounds() -> None:
    assert ItemPicked("0001", MAX_QUANTITY, "d", 1, T0, 1.0).quantity == MAX_QUANTITY
    weighed = WeighedItemAdded("4011", MAX_GRAMS, "d", 1, T0, 1.0, MAX_LABEL_PRICE_MINOR)
    assert (weighed.grams, weighed.label_price_minor) == (MAX_GRAMS, MAX_LABEL_PRICE_MINOR)
    with pytest.raises(InvalidCommand, match="label_price_minor must be <= "):
        WeighedItemAdded("4011", 1, "d", 1, T0, 1.0, MAX_LABEL_PRICE_MINOR + 1)
    with pytest.raises(InvalidCommand, match="quantity must be <= 999"):
        ItemPicked("0001", MAX_QUANTITY + 1, "d", 1, T0, 1.0)


def test_record_device_event_command_cannot_carry_an_out_of_range_event() -> None:
    with pytest.raises(InvalidCommand, match="device_seq"):
        RecordDeviceEvent(CartScanned("4011", "cart-1", 2**63, T0))
