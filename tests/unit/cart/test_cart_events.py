"""Events: validation on construction, JSON-safe round trip, malformed dicts refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cart.errors import InvalidCommand
from cart.events import (
    Event,
    ItemPicked,
    ItemPutBack,
    SessionExited,
    SessionOpened,
    SessionSentToStaffed,
    SessionSettled,
    event_type,
    from_dict,
    to_dict,
)

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

ALL_EVENTS: list[Event] = [
    SessionOpened("s-1", "shopper-1", "store-1", "palm", T0),
    ItemPicked("0001", 2, "plate-7", 41, T0 + timedelta(seconds=3), 0.93),
    ItemPutBack("0001", 1, "plate-7", 42, T0 + timedelta(seconds=9), 1),
    SessionExited(T0 + timedelta(minutes=5)),
    SessionSettled(T0 + timedelta(minutes=6), "r-9", 1299),
    SessionSentToStaffed(T0 + timedelta(minutes=5), "capture declined"),
]


def picked_dict(**overrides: Any) -> dict[str, Any]:
    data = to_dict(ALL_EVENTS[1])
    data.update(overrides)
    return data


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip_through_json(event: Event) -> None:
    text = json.dumps(to_dict(event))
    assert from_dict(json.loads(text)) == event


def test_to_dict_has_type_discriminator_and_utc_strings() -> None:
    data = to_dict(ALL_EVENTS[1])
    assert data == {
        "type": "item_picked",
        "product_code": "0001",
        "quantity": 2,
        "device_id": "plate-7",
        "device_seq": 41,
        "sensor_time": "2024-05-01T09:30:03+00:00",
        "confidence": 0.93,
    }
    assert event_type(ALL_EVENTS[2]) == "item_put_back"


def test_other_offsets_are_normalised_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    event = SessionExited(datetime(2024, 5, 1, 11, 30, tzinfo=cest))
    assert event.at == T0 + timedelta(hours=0) and event.at.tzinfo is UTC
    parsed = from_dict({"type": "session_exited", "at": "2024-05-01T11:30:00+02:00"})
    assert parsed == SessionExited(T0)


def test_picked_and_put_back_with_same_fields_differ() -> None:
    fields = ("0001", 1, "d", 1, T0, 0.5)
    put_back: object = ItemPutBack(*fields)
    assert ItemPicked(*fields) != put_back


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "item_teleported"}, "unknown event type"),
        ({"quantity": 1}, "unknown event type"),
        (picked_dict(type=7), "unknown event type"),
        ({k: v for k, v in picked_dict().items() if k != "device_seq"}, "missing fields"),
        (picked_dict(colour="red"), "unexpected fields"),
        (picked_dict(quantity=0), "quantity"),
        (picked_dict(quantity=-3), "quantity"),
        (picked_dict(quantity=1.5), "quantity"),
        (picked_dict(quantity=True), "quantity"),
        (picked_dict(confidence=1.01), "confidence"),
        (picked_dict(confidence=-0.1), "confidence"),
        (picked_dict(confidence="high"), "confidence"),
        (picked_dict(sensor_time="2024-05-01T09:30:03"), "timezone-aware"),
        (picked_dict(sensor_time="yesterday"), "ISO 8601"),
        (picked_dict(sensor_time=1714555803), "ISO 8601"),
        (picked_dict(product_code=""), "product_code"),
        (picked_dict(product_code=1234), "product_code"),
        (picked_dict(device_id="x" * 65), "device_id"),
        (picked_dict(device_seq=-1), "device_seq"),
        (
            {"type": "session_settled", "at": T0.isoformat(), "receipt_id": "r", "total_minor": -1},
            "total_minor",
        ),
        ({"type": "session_sent_to_staffed", "at": T0.isoformat(), "reason": " "}, "reason"),
    ],
)
def test_malformed_dicts_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidCommand, match=message):
        from_dict(data)


def test_non_mapping_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="mapping"):
        from_dict(["item_picked"])  # type: ignore[arg-type]


def test_naive_datetime_refused_on_construction() -> None:
    with pytest.raises(InvalidCommand, match="timezone-aware"):
        SessionOpened("s", "p", "st", "palm", datetime(2024, 5, 1, 9, 30))


def test_confidence_int_is_stored_as_float() -> None:
    event = ItemPicked("a", 1, "d", 0, T0, 1)
    assert isinstance(event.confidence, float) and event.confidence == 1.0
