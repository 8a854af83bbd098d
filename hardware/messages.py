"""Versioned wire schema of the messages devices send (smart carts, shelves, gates).

Messages are JSON objects, UTF-8 encoded, at most :data:`MAX_MESSAGE_BYTES` long,
and transport-neutral: the same bytes go over MQTT or HTTP unchanged. Each one
carries a ``type`` tag, ``schema_version`` and an envelope identifying the device:

* ``device_id``: 1-64 characters from ``[A-Za-z0-9._-]`` (also a valid MQTT topic
  segment, see :mod:`hardware.topics`);
* ``device_seq``: a per-device counter, ``0 <= device_seq <= 2**62`` (fits a SQL
  BIGINT; the HTTP API's bound too); ``(device_id, device_seq)`` identifies a message,
  so redelivered duplicates can be dropped;
* ``device_time``: when the device observed the event; must carry a UTC offset
  (naive times are refused) and is normalised to UTC on parsing.

Parsing is strict: no extra fields, no type coercion (``"5"`` is not an int,
``true`` is not ``1``), no NaN. Pydantic stays here at the edge; the domain gets
values out of these models, never the models themselves.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from hardware.errors import InvalidMessage

SCHEMA_VERSION: Final = 1
"""The only wire schema version this build reads and writes."""

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""Largest accepted encoded message, in bytes (4 MiB)."""

MAX_IMAGE_BYTES: Final = 2 * 1024 * 1024
"""Largest accepted palm image after base64 decoding, in bytes (2 MiB)."""

_MAX_IMAGE_BASE64_CHARS: Final = 4 * ((MAX_IMAGE_BYTES + 2) // 3)

ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
"""Device, gate, session and store identifiers: 1-64 characters of ``[A-Za-z0-9._-]``."""

PRODUCT_CODE_PATTERN: Final = r"^[A-Za-z0-9._-]{1,32}$"
"""Product codes (GTIN, SKU, plate id): 1-32 characters of ``[A-Za-z0-9._-]``."""

MAX_DEVICE_SEQ: Final = 2**62
"""The largest device sequence number: the bound of the HTTP API and the staff console,
so an event sent over MQTT can always be named there (e.g. to resolve its flag)."""

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
ProductCode = Annotated[str, Field(pattern=PRODUCT_CODE_PATTERN)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00: before year 1 in UTC
        raise ValueError("time is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _decode_image(value: object) -> bytes:
    """Validate an image: raw bytes (Python side) or standard base64 text (wire side).

    Raises ``ValueError`` (reported by pydantic) if it is empty, not strict
    base64, or larger than :data:`MAX_IMAGE_BYTES` once decoded.
    """
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        if len(value) > _MAX_IMAGE_BASE64_CHARS:
            raise ValueError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"image is not valid base64: {exc}") from exc
    else:
        raise ValueError("image must be base64 text")
    if not data:
        raise ValueError("image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"image is larger than {MAX_IMAGE_BYTES} bytes")
    return data


def _encode_image(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


ImageBytes = Annotated[
    bytes,
    PlainValidator(_decode_image),
    PlainSerializer(_encode_image, return_type=str, when_used="json"),
]


class _Envelope(BaseModel):
    """Fields every device message carries."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: Identifier
    device_seq: int = Field(ge=0, le=MAX_DEVICE_SEQ)
    device_time: UtcDatetime

    @field_validator("schema_version", mode="before")
    @classmethod
    def _refuse_bool_version(cls, value: Any) -> Any:
        # Literal[1] alone would accept JSON ``true`` because True == 1.
        if isinstance(value, bool):
            raise ValueError("schema_version must be an integer")
        return value


class ItemEventMessage(_Envelope):
    """A smart cart, shelf or camera saw an item picked or put back in a session.

    ``quantity`` is a count of units (1-999); ``confidence`` is the sensor's own
    estimate in [0, 1] that the event is right.
    """

    type: Literal["item_event"] = "item_event"
    kind: Literal["picked", "put_back"]
    session_id: Identifier
    product_code: ProductCode
    quantity: int = Field(ge=1, le=999)
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class PalmCaptureMessage(_Envelope):
    """A gate's palm scanner captured an image (PNG/JPEG bytes, base64 on the wire)."""

    type: Literal["palm_capture"] = "palm_capture"
    gate_id: Identifier
    direction: Literal["entry", "exit"]
    image: ImageBytes


class HeartbeatMessage(_Envelope):
    """A device is alive; ``uptime_s`` (seconds since boot) going down reveals a reboot."""

    type: Literal["heartbeat"] = "heartbeat"
    uptime_s: int = Field(ge=0)


class GateEventMessage(_Envelope):
    """What a gate's barrier did: opened, closed, a person passed, forced open or held open."""

    type: Literal["gate_event"] = "gate_event"
    gate_id: Identifier
    event: Literal["opened", "closed", "passed", "forced", "held_open"]
    session_id: Identifier | None = None


class PlateReadingMessage(_Envelope):
    """A shelf weight plate's stable reading, in whole grams (0 to 1,000,000 g).

    ``plate_id`` names the plate (a product-code-like id, mapped to products by
    the store's planogram).
    """

    type: Literal["plate_reading"] = "plate_reading"
    plate_id: ProductCode
    grams: int = Field(ge=0, le=1_000_000)
    stable: bool


Message = (ItemEventMessage | PalmCaptureMessage | HeartbeatMessage | GateEventMessage
           | PlateReadingMessage)

_ADAPTER: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])


def validation_reason(exc: ValidationError) -> str:
    """Turn pydantic's errors into one short, loggable sentence."""
    errors = exc.errors(include_url=False)
    for err in errors:
        kind, loc = err["type"], err["loc"]
        if kind == "json_invalid":
            return f"invalid JSON: {err['msg'].removeprefix('Invalid JSON: ')}"
        if kind == "union_tag_not_found":
            return "missing message 'type'"
        if kind == "union_tag_invalid":
            return f"unknown message type {err['input'].get('type')!r}"
        if kind == "literal_error" and loc[-1:] == ("schema_version",):
            found = err["input"]
            return f"unsupported schema_version {found!r} (this build reads {SCHEMA_VERSION})"
    parts = []
    for err in errors[:5]:
        field = ".".join(str(p) for p in err["loc"][1:]) or "message"
        parts.append(f"{field}: {err['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def parse_message(raw: bytes) -> Message:
    """Decode one device message from its UTF-8 JSON bytes.

    Raises :class:`~hardware.errors.InvalidMessage` if ``raw`` is longer than
    :data:`MAX_MESSAGE_BYTES`, is not JSON, has a missing or unknown ``type``,
    an unsupported ``schema_version``, a missing, extra or mistyped field, a naive
    ``device_time``, or a value out of range; the error's ``reason`` says which.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidMessage(validation_reason(exc)) from exc


def encode_message(msg: Message) -> bytes:
    """Encode a message as compact UTF-8 JSON bytes, the inverse of :func:`parse_message`.

    Raises :class:`~hardware.errors.InvalidMessage` if the result would exceed
    :data:`MAX_MESSAGE_BYTES` (cannot happen with the field limits above, but the
    receiver would refuse it, so the sender refuses first).
    """
    raw = msg.model_dump_json().encode("utf-8")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES} limit")
    return raw
