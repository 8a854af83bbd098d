"""Wire schema: round trips, and refusal of every kind of malformed message."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hardware.errors import HardwareError, InvalidMessage
from hardware.messages import (
    MAX_IMAGE_BYTES,
    MAX_MESSAGE_BYTES,
    HeartbeatMessage,
    ItemEventMessage,
    Message,
    PalmCaptureMessage,
    encode_message,
    parse_message,
)

T0 = datetime(2024, 5, 1, 9, 30, 15, 250_000, tzinfo=UTC)
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def item_event(**overrides: Any) -> ItemEventMessage:
    fields: dict[str, Any] = {
        "device_id": "cart-7",
        "device_seq": 41,
        "device_time": T0,
        "kind": "picked",
        "session_id": "sess_01H",
        "product_code": "4006381333931",
        "quantity": 3,
        "confidence": 0.97,
    }
    return ItemEventMessage(**(fields | overrides))


def palm_capture() -> PalmCaptureMessage:
    return PalmCaptureMessage(
        device_id="gate-1.scanner",
        device_seq=0,
        device_time=T0,
        gate_id="gate-1",
        direction="entry",
        image=IMAGE,
    )


def heartbeat() -> HeartbeatMessage:
    return HeartbeatMessage(device_id="shelf_3", device_seq=9, device_time=T0, uptime_s=3600)


ALL_MESSAGES: list[Message] = [item_event(), palm_capture(), heartbeat()]


def wire_dict(msg: Message) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encode_message(msg))
    return result


def refused(payload: dict[str, Any] | bytes) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw)
    assert isinstance(info.value, HardwareError)
    return info.value.reason


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_round_trip_gives_equal_message(msg: Message) -> None:
    parsed = parse_message(encode_message(msg))
    assert parsed == msg
    assert type(parsed) is type(msg)
    assert encode_message(parsed) == encode_message(msg)


def test_wire_form_is_plain_json_with_type_version_and_base64_image() -> None:
    data = wire_dict(palm_capture())
    assert data["type"] == "palm_capture"
    assert data["schema_version"] == 1
    assert data["device_time"] == "2024-05-01T09:30:15.250000Z"
    assert base64.b64decode(data["image"], validate=True) == IMAGE


def test_device_time_with_offset_is_normalised_to_utc() -> None:
    data = wire_dict(item_event())
    data["device_time"] = "2024-05-01T11:30:15+02:00"
    parsed = parse_message(json.dumps(data).encode())
    assert parsed.device_time == datetime(2024, 5, 1, 9, 30, 15, tzinfo=UTC)
    assert parsed.device_time.utcoffset() == timedelta(0)
    local = item_event(device_time=datetime(2024, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))))
    assert local.device_time.tzinfo == UTC


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"\xff\xfe\x00", b'{"type": "heartbeat",}']
)
def test_invalid_json_is_refused(raw: bytes) -> None:
    assert "invalid JSON" in refused(raw)


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"item_event"', b"null"])
def test_non_object_json_is_refused(raw: bytes) -> None:
    refused(raw)


def test_unknown_and_missing_type_are_refused() -> None:
    data = wire_dict(heartbeat())
    assert "unknown message type 'reboot'" in refused(data | {"type": "reboot"})
    del data["type"]
    assert "missing message 'type'" in refused(data)


@pytest.mark.parametrize("version", [0, 2, "1", 1.5, True, None])
@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_unknown_schema_version_is_refused(msg: Message, version: object) -> None:
    assert "schema_version" in refused(wire_dict(msg) | {"schema_version": version})


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_every_missing_field_is_refused(msg: Message) -> None:
    data = wire_dict(msg)
    for name in data:
        if name in ("type", "schema_version"):
            continue
        reason = refused({k: v for k, v in data.items() if k != name})
        assert name in reason and "required" in reason


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_extra_field_is_refused(msg: Message) -> None:
    reason = refused(wire_dict(msg) | {"firmware": "1.2.3"})
    assert "firmware" in reason and "Extra inputs" in reason


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_naive_device_time_is_refused(msg: Message) -> None:
    reason = refused(wire_dict(msg) | {"device_time": "2024-05-01T09:30:15"})
    assert "device_time" in reason and "timezone" in reason


@pytest.mark.parametrize("value", [-1, 2**62 + 1, 2**63, "7", 7.0, True, None])
@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_bad_device_seq_is_refused(msg: Message, value: object) -> None:
    assert "device_seq" in refused(wire_dict(msg) | {"device_seq": value})


@pytest.mark.parametrize(
    "device_id", ["", "x" * 65, "cart 7", "cart/7", "cart+", "#", "$SYS", "cärt", 7]
)
@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_bad_device_id_is_refused(msg: Message, device_id: object) -> None:
    assert "device_id" in refused(wire_dict(msg) | {"device_id": device_id})


@pytest.mark.parametrize("value", ["yesterday", 1714555815, "2024-13-01T00:00:00Z"])
def test_unparseable_device_time_is_refused(value: object) -> None:
    assert "device_time" in refused(wire_dict(heartbeat()) | {"device_time": value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "dropped"),
        ("kind", None),
        ("quantity", 0),
        ("quantity", 1000),
        ("quantity", "3"),
        ("quantity", 2.0),
        ("quantity", True),
        ("confidence", -0.01),
        ("confidence", 1.01),
        ("confidence", "0.9"),
        ("product_code", ""),
        ("product_code", "x" * 33),
        ("product_code", 4006381333931),
        ("product_code", "has space"),
        ("session_id", ""),
        ("session_id", ["s"]),
    ],
)
def test_bad_item_event_fields_are_refused(field: str, value: object) -> None:
    assert field in refused(wire_dict(item_event()) | {field: value})


def test_non_finite_confidence_is_refused() -> None:
    raw = encode_message(item_event()).replace(b'"confidence":0.97', b'"confidence":NaN')
    assert b"NaN" in raw
    refused(raw)


def test_item_event_limits_are_accepted() -> None:
    for quantity, confidence in [(1, 0.0), (999, 1.0)]:
        msg = item_event(quantity=quantity, confidence=confidence, product_code="x" * 32)
        assert parse_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("direction", "sideways"),
        ("gate_id", ""),
        ("gate_id", "gate/1"),
        ("image", ""),
        ("image", "not base64!"),
        ("image", "iVBORw0"),
        ("image", 12),
        ("image", list(IMAGE[:4])),
    ],
)
def test_bad_palm_capture_fields_are_refused(field: str, value: object) -> None:
    assert field in refused(wire_dict(palm_capture()) | {field: value})


def test_image_size_limit_is_on_decoded_bytes() -> None:
    data = wire_dict(palm_capture())
    data["image"] = base64.b64encode(bytes(MAX_IMAGE_BYTES)).decode()
    msg = parse_message(json.dumps(data).encode())
    assert isinstance(msg, PalmCaptureMessage) and len(msg.image) == MAX_IMAGE_BYTES
    data["image"] = base64.b64encode(bytes(MAX_IMAGE_BYTES + 1)).decode()
    assert "image is larger than" in refused(data)


def test_oversized_image_cannot_be_built_either() -> None:
    with pytest.raises(ValueError, match="image is larger than"):
        PalmCaptureMessage(
            device_id="g",
            device_seq=0,
            device_time=T0,
            gate_id="g",
            direction="exit",
            image=bytes(MAX_IMAGE_BYTES + 1),
        )


def test_oversized_payload_is_refused_before_parsing() -> None:
    raw = b" " * (MAX_MESSAGE_BYTES + 1)
    assert "over the" in refused(raw)


def test_bad_heartbeat_uptime_is_refused() -> None:
    assert "uptime_s" in refused(wire_dict(heartbeat()) | {"uptime_s": -5})


def test_messages_are_immutable() -> None:
    msg = item_event()
    with pytest.raises(ValueError):
        msg.quantity = 5


def test_naive_datetime_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="timezone"):
        item_event(device_time=datetime(2024, 5, 1, 9, 30))


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=lambda m: m.type)
def test_a_device_time_outside_utc_years_is_refused_not_crashed(msg: Message,
                                                               value: str) -> None:
    """Valid with its offset, but before year 1 or after 9999 once in UTC."""
    assert "out of range" in refused(wire_dict(msg) | {"device_time": value})


def test_the_largest_device_seq_is_accepted() -> None:
    assert parse_message(json.dumps(wire_dict(heartbeat()) | {"device_seq": 2**62}).encode()
                         ).device_seq == 2**62
