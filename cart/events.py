"""Events of one shopping session, as frozen dataclasses, and their JSON-safe form.

Events validate themselves on construction, so an invalid event can exist neither in
memory nor in the event log. Datetimes must be timezone-aware and are normalised to
UTC. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeAlias

from cart.errors import InvalidCommand

MAX_ID_LENGTH = 64
"""Longest session id and device id (the event store's column width), in characters."""

MAX_CODE_LENGTH = 32
"""Longest product code (the catalogue's column width), in characters."""

MAX_QUANTITY = 999
"""Most units one item event may carry; more is a sensor or wire fault, not a basket."""

MAX_GRAMS = 50_000
"""Heaviest weighed item or scale change one event may carry, in grams (50 kg)."""

MAX_DEVICE_SEQ = 2**62
"""Largest device sequence number, inclusive: the bound of the HTTP API, the staff
console and the MQTT protocol (``hardware.messages.MAX_DEVICE_SEQ``), and far inside
the event store's signed 64-bit ``device_seq`` column, so the (device id, sequence)
key is stored exactly on every engine."""

MAX_LABEL_PRICE_MINOR = 10**9
"""Highest price a variable-measure label may print, in minor units (10,000,000.00 in
a two-decimal currency; the catalogue's highest unit price): label totals stay far
inside a signed 64-bit column."""


def _require_text(name: str, value: object, max_length: int | None = None) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"{name} must be a non-empty string, got {value!r}")
    if max_length is not None and len(value) > max_length:
        raise InvalidCommand(f"{name} is longer than {max_length} characters")


def _require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise InvalidCommand unless ``value`` is an int (not a bool) in
    [``minimum``, ``maximum``] (no upper bound when ``maximum`` is None)."""
    # bool is an int subclass; True is not a quantity.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidCommand(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidCommand(f"{name} must be <= {maximum}, got {value}")


def _require_code(name: str, value: object) -> None:
    _require_text(name, value, MAX_CODE_LENGTH)
    assert isinstance(value, str)
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise InvalidCommand(f"{name} must be printable with no white space, got {value!r}")


def _require_confidence(obj: object) -> None:
    conf = getattr(obj, "confidence")  # noqa: B009 - shared by several dataclasses
    if isinstance(conf, bool) or not isinstance(conf, int | float):
        raise InvalidCommand(f"confidence must be a number, got {conf!r}")
    if not (math.isfinite(conf) and 0.0 <= conf <= 1.0):
        raise InvalidCommand(f"confidence must be within [0, 1], got {conf}")
    object.__setattr__(obj, "confidence", float(conf))


def _require_device(obj: object) -> None:
    _require_text("device_id", getattr(obj, "device_id"), MAX_ID_LENGTH)  # noqa: B009
    _require_int("device_seq", getattr(obj, "device_seq"), 0, MAX_DEVICE_SEQ)  # noqa: B009
    _utc(obj, "sensor_time")


def _utc(obj: object, name: str) -> None:
    """Check that attribute ``name`` of ``obj`` is aware and rewrite it in UTC."""
    value = getattr(obj, name)
    if not isinstance(value, datetime):
        raise InvalidCommand(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCommand(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    object.__setattr__(obj, name, value.astimezone(UTC))


class DeviceObservation:
    """Mixin of the events a device observed: ``device_key`` = (device id, device
    sequence) identifies the observation (the idempotency key of ingest)."""

    device_id: str
    device_seq: int

    @property
    def device_key(self) -> tuple[str, int]:
        """The (device id, device sequence) pair that identifies this observation."""
        return (self.device_id, self.device_seq)


@dataclass(frozen=True)
class SessionOpened:
    """A shopper entered: the session exists from ``at`` (UTC).

    ``entry_method`` names how the shopper was admitted (``"palm"``, ``"qr"``, ...).
    Raises InvalidCommand on empty or over-long ids or a naive ``at``.
    """

    session_id: str
    shopper_id: str
    store_id: str
    entry_method: str
    at: datetime

    def __post_init__(self) -> None:
        _require_text("session_id", self.session_id, MAX_ID_LENGTH)
        _require_text("shopper_id", self.shopper_id)
        _require_text("store_id", self.store_id)
        _require_text("entry_method", self.entry_method)
        _utc(self, "at")


@dataclass(frozen=True)
class _ItemEvent(DeviceObservation):
    """Fields shared by item events.

    ``product_code`` is a GTIN (string) or store code, printable, at most
    :data:`MAX_CODE_LENGTH` characters; ``quantity`` is a count of units in
    [1, :data:`MAX_QUANTITY`]; ``device_seq`` the emitting device's sequence number
    in [0, :data:`MAX_DEVICE_SEQ`]; ``sensor_time`` the device's UTC timestamp of the observation;
    ``confidence`` a probability in [0, 1]. Raises InvalidCommand otherwise.
    """

    product_code: str
    quantity: int
    device_id: str
    device_seq: int
    sensor_time: datetime
    confidence: float

    def __post_init__(self) -> None:
        _require_code("product_code", self.product_code)
        _require_int("quantity", self.quantity, 1, MAX_QUANTITY)
        _require_device(self)
        _require_confidence(self)


@dataclass(frozen=True)
class ItemPicked(_ItemEvent):
    """A device saw ``quantity`` units of ``product_code`` taken."""


@dataclass(frozen=True)
class ItemPutBack(_ItemEvent):
    """A device saw ``quantity`` units of ``product_code`` returned."""


@dataclass(frozen=True)
class SessionExited:
    """The shopper left through the exit gate at ``at`` (UTC)."""

    at: datetime

    def __post_init__(self) -> None:
        _utc(self, "at")


@dataclass(frozen=True)
class SessionSettled:
    """The session was paid: ``total_minor`` (minor currency units, >= 0) on ``receipt_id``."""

    at: datetime
    receipt_id: str
    total_minor: int

    def __post_init__(self) -> None:
        _utc(self, "at")
        _require_text("receipt_id", self.receipt_id)
        _require_int("total_minor", self.total_minor, 0)


@dataclass(frozen=True)
class SessionSentToStaffed:
    """The session went to the staffed checkout queue at ``at`` (UTC) for ``reason``."""

    at: datetime
    reason: str

    def __post_init__(self) -> None:
        _utc(self, "at")
        _require_text("reason", self.reason)


@dataclass(frozen=True)
class SessionAbandoned:
    """A sweep closed a session left open with no event recorded since ``idle_since``.

    ``at`` is when the sweep ran (UTC). Raises InvalidCommand on naive datetimes.
    """

    at: datetime
    idle_since: datetime

    def __post_init__(self) -> None:
        _utc(self, "at")
        _utc(self, "idle_since")


@dataclass(frozen=True)
class CompanionJoined:
    """A companion entered on the payer's session at ``at`` (UTC).

    ``gate_device_id`` is the entry gate that admitted them (None when unknown).
    Their item events are recorded on the payer's session and cart.
    """

    companion_shopper_id: str
    gate_device_id: str | None
    at: datetime

    def __post_init__(self) -> None:
        _require_text("companion_shopper_id", self.companion_shopper_id, MAX_ID_LENGTH)
        if self.gate_device_id is not None:
            _require_text("gate_device_id", self.gate_device_id, MAX_ID_LENGTH)
        _utc(self, "at")


@dataclass(frozen=True)
class CartDeviceRegistered:
    """Smart cart ``device_id`` is used by ``shopper_id`` (payer or companion) from ``at``."""

    device_id: str
    shopper_id: str
    at: datetime

    def __post_init__(self) -> None:
        _require_text("device_id", self.device_id, MAX_ID_LENGTH)
        _require_text("shopper_id", self.shopper_id, MAX_ID_LENGTH)
        _utc(self, "at")


@dataclass(frozen=True)
class WeighedItemAdded(DeviceObservation):
    """A weighed item: ``grams`` (integer grams, [1, :data:`MAX_GRAMS`]) of ``code``.

    ``code`` is a PLU (``"4011"``, organic ``"94011"``) or a GTIN string (for a
    variable-measure label, the label's GTIN-13). ``label_price_minor`` is the price
    printed in a price-embedded label (minor units, [0, :data:`MAX_LABEL_PRICE_MINOR`]),
    else None: pricing per kg is the pricing component's job. Device fields as in
    :class:`ItemPicked`. Raises InvalidCommand on a value out of range.
    """

    code: str
    grams: int
    device_id: str
    device_seq: int
    sensor_time: datetime
    confidence: float
    label_price_minor: int | None = None

    def __post_init__(self) -> None:
        _require_code("code", self.code)
        _require_int("grams", self.grams, 1, MAX_GRAMS)
        if self.label_price_minor is not None:
            _require_int("label_price_minor", self.label_price_minor, 0, MAX_LABEL_PRICE_MINOR)
        _require_device(self)
        _require_confidence(self)


@dataclass(frozen=True)
class CartScanned(DeviceObservation):
    """A smart cart's scanner read barcode or PLU ``code`` (reconciled with its scale)."""

    code: str
    device_id: str
    device_seq: int
    sensor_time: datetime

    def __post_init__(self) -> None:
        _require_code("code", self.code)
        _require_device(self)


@dataclass(frozen=True)
class CartScaleChanged(DeviceObservation):
    """A smart cart's scale settled at a new load: ``delta_grams`` (signed, non-zero)."""

    delta_grams: int
    device_id: str
    device_seq: int
    sensor_time: datetime

    def __post_init__(self) -> None:
        d = self.delta_grams
        if isinstance(d, bool) or not isinstance(d, int) or d == 0 or abs(d) > MAX_GRAMS:
            raise InvalidCommand(
                f"delta_grams must be a non-zero integer within +-{MAX_GRAMS}, got {d!r}"
            )
        _require_device(self)


@dataclass(frozen=True)
class ItemFlagged(DeviceObservation):
    """A device or inference reports an observation for review (never billed).

    ``reason`` is a short code (e.g. ``"weight_without_scan"``), ``detail`` a sentence,
    ``product_code`` the product concerned when known.
    """

    reason: str
    detail: str
    product_code: str | None
    device_id: str
    device_seq: int
    sensor_time: datetime

    def __post_init__(self) -> None:
        _require_text("reason", self.reason, MAX_ID_LENGTH)
        _require_text("detail", self.detail)
        if self.product_code is not None:
            _require_code("product_code", self.product_code)
        _require_device(self)


ItemEvent: TypeAlias = ItemPicked | ItemPutBack
DeviceEvent: TypeAlias = (
    ItemPicked | ItemPutBack | WeighedItemAdded | CartScanned | CartScaleChanged | ItemFlagged
)
"""Observations by a device: each carries a (device id, device sequence) key."""
DEVICE_EVENT_TYPES = (
    ItemPicked, ItemPutBack, WeighedItemAdded, CartScanned, CartScaleChanged, ItemFlagged
)
Event: TypeAlias = (
    SessionOpened
    | ItemPicked
    | ItemPutBack
    | SessionExited
    | SessionSettled
    | SessionSentToStaffed
    | SessionAbandoned
    | CompanionJoined
    | CartDeviceRegistered
    | WeighedItemAdded
    | CartScanned
    | CartScaleChanged
    | ItemFlagged
)

EVENT_TYPES: Mapping[str, type[Event]] = {
    "session_opened": SessionOpened,
    "item_picked": ItemPicked,
    "item_put_back": ItemPutBack,
    "session_exited": SessionExited,
    "session_settled": SessionSettled,
    "session_sent_to_staffed": SessionSentToStaffed,
    "session_abandoned": SessionAbandoned,
    "companion_joined": CompanionJoined,
    "cart_device_registered": CartDeviceRegistered,
    "weighed_item_added": WeighedItemAdded,
    "cart_scanned": CartScanned,
    "cart_scale_changed": CartScaleChanged,
    "item_flagged": ItemFlagged,
}
"""Discriminator value -> event class; the values are stable, they are stored."""

_TYPE_NAMES: Mapping[type[Event], str] = {cls: name for name, cls in EVENT_TYPES.items()}
_DATETIME_FIELDS = frozenset({"at", "sensor_time", "idle_since"})


def event_type(event: Event) -> str:
    """The stable discriminator string of ``event`` (for example ``"item_picked"``)."""
    return _TYPE_NAMES[type(event)]


def to_dict(event: Event) -> dict[str, Any]:
    """A JSON-safe dict of ``event``: a ``type`` key plus every field.

    Datetimes become ISO 8601 strings with a ``+00:00`` offset.
    """
    out: dict[str, Any] = {"type": event_type(event)}
    for f in fields(event):
        value = getattr(event, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _parse_datetime(name: str, value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidCommand(f"{name} must be an ISO 8601 string, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidCommand(f"{name} is not an ISO 8601 datetime: {value!r}") from exc


def from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from :func:`to_dict` output.

    Raises InvalidCommand when ``data`` is not a mapping, its ``type`` is unknown, a
    field is missing or unexpected, or a value fails the event's validation (quantity
    < 1, confidence outside [0, 1], naive datetime, ...).
    """
    if not isinstance(data, Mapping):
        raise InvalidCommand(f"an event must be a mapping, got {type(data).__name__}")
    type_name = data.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise InvalidCommand(f"unknown event type {type_name!r}")
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in data]
    extra = sorted(set(data) - set(names) - {"type"})
    if missing or extra:
        raise InvalidCommand(f"{type_name}: missing fields {missing}, unexpected fields {extra}")
    kwargs = {n: _parse_datetime(n, data[n]) if n in _DATETIME_FIELDS else data[n] for n in names}
    build: Callable[..., Event] = cls
    return build(**kwargs)
