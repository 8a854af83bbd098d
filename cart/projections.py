"""Cart contents derived from a session's device events. Standard library and biip only.

Devices deliver late and out of order, so the cart is computed over device events
sorted by (sensor_time, device_id, device_seq), never by arrival. Repeated device
keys count once. The result is the same for any permutation and duplication of the
same events. Smart-cart scans and scale changes are first paired by
:func:`cart.smart_cart.reconcile`; unit items go to ``lines``, weighed goods to
``weighed`` (grams per PLU or GTIN; pricing per kg is the pricing component's job).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cart.errors import InvalidCommand
from cart.events import (
    DEVICE_EVENT_TYPES,
    CartDeviceRegistered,
    CartScaleChanged,
    CartScanned,
    DeviceEvent,
    Event,
    ItemFlagged,
    ItemPicked,
    ItemPutBack,
    SessionAbandoned,
    SessionExited,
    SessionSentToStaffed,
    SessionSettled,
    WeighedItemAdded,
)
from cart.smart_cart import SCALE_TOLERANCE_G, CartOp, OpKind, reconcile


class FlagReason(enum.StrEnum):
    """Why an item event needs a human look instead of going silently on the bill."""

    PUT_BACK_NOT_PICKED = "put_back_not_picked"
    """A put-back of a product with no units in the cart at that point."""
    PUT_BACK_EXCEEDS_PICKED = "put_back_exceeds_picked"
    """A put-back of more units than were in the cart; the line stops at zero."""
    LOW_CONFIDENCE = "low_confidence"
    """Confidence below the threshold; the event was left out of the lines."""
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    """Same (device id, device sequence) as an earlier event with other content."""
    SCAN_WITHOUT_WEIGHT = "scan_without_weight"
    """A smart-cart scan no scale change confirmed."""
    WEIGHT_WITHOUT_SCAN = "weight_without_scan"
    """A smart-cart scale change no scan explained."""
    UNDECODABLE_CODE = "undecodable_code"
    """A smart-cart scan that is neither a PLU nor a valid GTIN."""
    DEVICE_FLAGGED = "device_flagged"
    """A device or inference reported an observation for review (``ItemFlagged``)."""


@dataclass(frozen=True)
class CartFlag:
    """One device event set aside for review, identified by its device key.

    ``product_code`` is None when no product is known (a weight change with no scan);
    ``detail`` is a sentence for the reviewer.
    """

    reason: FlagReason
    product_code: str | None
    device_id: str
    device_seq: int
    detail: str = ""


@dataclass(frozen=True)
class WeighedLine:
    """Weighed goods of one PLU or GTIN: total ``grams`` and, for price-embedded
    labels, the total ``label_price_minor`` (minor units; None when sold per kg)."""

    grams: int
    label_price_minor: int | None = None


@dataclass(frozen=True)
class CartContents:
    """The cart: ``lines`` maps product code -> quantity (units, always > 0);
    ``weighed`` maps PLU or GTIN -> :class:`WeighedLine` (grams > 0).

    ``flags`` lists events for review, in sensor order.
    """

    lines: dict[str, int] = field(default_factory=dict)
    flags: list[CartFlag] = field(default_factory=list)
    weighed: dict[str, WeighedLine] = field(default_factory=dict)

    @property
    def needs_review(self) -> bool:
        """True when at least one event was flagged."""
        return bool(self.flags)


def _as_op(event: DeviceEvent) -> CartOp:
    if isinstance(event, ItemPicked | ItemPutBack):
        kind: OpKind = "pick" if isinstance(event, ItemPicked) else "put_back"
        return CartOp(event.sensor_time, event.device_id, event.device_seq, kind,
                      event.product_code, event.quantity, event.confidence)
    if isinstance(event, WeighedItemAdded):
        return CartOp(event.sensor_time, event.device_id, event.device_seq, "weigh_add",
                      event.code, event.grams, event.confidence, event.label_price_minor)
    assert isinstance(event, ItemFlagged)
    return CartOp(event.sensor_time, event.device_id, event.device_seq, "flag",
                  event.product_code, 0, reason=event.reason, detail=event.detail)


def _order_key(op: CartOp) -> tuple[object, ...]:
    # The trailing fields keep the order total so any permutation agrees.
    return (op.sensor_time, op.device_id, op.device_seq, op.kind, op.code or "", op.amount,
            op.confidence, op.label_price_minor or 0, op.reason or "")


def _unique_device_events(events: Iterable[Event]) -> tuple[list[DeviceEvent], list[CartFlag]]:
    """Each device key once (the smallest content wins), plus flags for conflicting reuse."""
    first: dict[tuple[str, int], DeviceEvent] = {}
    # Only keys reused with other content get a set of variants (rare: a device bug).
    variants: dict[tuple[str, int], set[DeviceEvent]] = {}
    for event in events:
        if isinstance(event, DEVICE_EVENT_TYPES):
            key = event.device_key
            seen = first.setdefault(key, event)
            if seen is not event and seen != event:
                variants.setdefault(key, {seen}).add(event)
    unique: list[DeviceEvent] = []
    flags: list[CartFlag] = []
    for key in sorted(first):
        if key not in variants:
            unique.append(first[key])
            continue
        ordered = sorted(variants[key], key=repr)
        unique.append(ordered[0])
        for other in ordered[1:]:
            code = getattr(other, "product_code", getattr(other, "code", None))
            flags.append(CartFlag(FlagReason.CONFLICTING_DUPLICATE, code, *key))
    return unique, flags


def cart_contents(
    events: Iterable[Event], *, min_confidence: float = 0.0, rcn_region: str = "gb"
) -> CartContents:
    """The cart after the device events in ``events`` (other event types are ignored).

    Events with ``confidence < min_confidence`` are flagged and left out. A put-back
    (or weighed removal) of more than the cart holds at that sensor time is flagged
    and clamps the line at zero (weighed: beyond :data:`SCALE_TOLERANCE_G`). Events
    repeating a (device id, device sequence) count once, flagged when their content
    differs. ``rcn_region`` decodes variable-measure labels (see
    :func:`cart.smart_cart.decode_code`). Raises InvalidCommand when
    ``min_confidence`` is outside [0, 1].
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidCommand(f"min_confidence must be within [0, 1], got {min_confidence}")
    unique, flags = _unique_device_events(events)
    smart = [e for e in unique if isinstance(e, CartScanned | CartScaleChanged)]
    ops = [_as_op(e) for e in unique if not isinstance(e, CartScanned | CartScaleChanged)]
    ops += reconcile(smart, rcn_region=rcn_region)
    fold = _Fold(min_confidence)
    for op in sorted(ops, key=_order_key):
        fold.step(op)
    flags += fold.flags
    return CartContents(
        lines={code: qty for code, qty in sorted(fold.lines.items()) if qty > 0},
        flags=flags,
        weighed={code: w for code, w in sorted(fold.weighed.items()) if w.grams > 0},
    )


class _Fold:
    """Mutable accumulator of :func:`cart_contents` (kept private)."""

    def __init__(self, min_confidence: float) -> None:
        self.min_confidence = min_confidence
        self.lines: dict[str, int] = {}
        self.weighed: dict[str, WeighedLine] = {}
        self.flags: list[CartFlag] = []

    def flag(self, reason: FlagReason, op: CartOp, detail: str = "") -> None:
        self.flags.append(CartFlag(reason, op.code, op.device_id, op.device_seq, detail))

    def step(self, op: CartOp) -> None:
        if op.kind == "flag":
            known = {r.value: r for r in FlagReason}.get(op.reason or "")
            detail = op.detail if known else f"{op.reason}: {op.detail}"
            self.flag(known or FlagReason.DEVICE_FLAGGED, op, detail)
            return
        if op.confidence < self.min_confidence:
            self.flag(FlagReason.LOW_CONFIDENCE, op, _left_out(op, self.min_confidence))
            return
        assert op.code is not None
        if op.kind in ("pick", "put_back"):
            self._units(op, op.code)
        else:
            self._grams(op, op.code)

    def _units(self, op: CartOp, code: str) -> None:
        held = self.lines.get(code, 0)
        if op.kind == "pick":
            self.lines[code] = held + op.amount
            return
        if held == 0:
            self.flag(FlagReason.PUT_BACK_NOT_PICKED, op)
        elif op.amount > held:
            self.flag(FlagReason.PUT_BACK_EXCEEDS_PICKED, op)
        self.lines[code] = max(0, held - op.amount)

    def _grams(self, op: CartOp, code: str) -> None:
        held = self.weighed.get(code, WeighedLine(0))
        label = op.label_price_minor
        if op.kind == "weigh_add":
            price = None if label is None and held.label_price_minor is None else (
                (held.label_price_minor or 0) + (label or 0))
            self.weighed[code] = WeighedLine(held.grams + op.amount, price)
            return
        grams = max(0, held.grams - op.amount)
        if held.grams == 0:
            self.flag(FlagReason.PUT_BACK_NOT_PICKED, op)
        elif op.amount > held.grams + SCALE_TOLERANCE_G:
            self.flag(FlagReason.PUT_BACK_EXCEEDS_PICKED, op)
        if grams <= SCALE_TOLERANCE_G:
            grams = 0  # what is left is within the scale's tolerance, not goods
        price = held.label_price_minor
        if price is not None:
            price = max(0, price - (label or 0)) if grams else 0
        self.weighed[code] = WeighedLine(grams, price)


_VERBS = {"pick": "picked", "put_back": "put back", "weigh_add": "weighed",
          "weigh_remove": "weighed off"}


def _left_out(op: CartOp, threshold: float) -> str:
    """The reviewer's sentence for an event left out for its low confidence: what the
    device reported and that the cart does not count it until staff decide."""
    amount = f"{op.amount} g of" if op.kind in ("weigh_add", "weigh_remove") else f"{op.amount} x"
    effect = ("not taken off the cart" if op.kind in ("put_back", "weigh_remove")
              else "left out of the cart")
    return (f"{_VERBS.get(op.kind, op.kind)} {amount} {op.code} at confidence "
            f"{op.confidence:g} (below the {threshold:g} threshold): {effect} until staff "
            f"decide")


def device_sessions(stored: Iterable[tuple[str, Event]]) -> Mapping[str, str]:
    """Smart-cart device id -> session id of its latest registration, over a feed of
    (session id, event) pairs in position order; devices of sessions that ended
    (exited, settled, staffed, abandoned) are dropped."""
    routes: dict[str, str] = {}
    for session_id, event in stored:
        if isinstance(event, CartDeviceRegistered):
            routes[event.device_id] = session_id
        elif isinstance(event, SessionExited | SessionSettled | SessionSentToStaffed
                        | SessionAbandoned):
            routes = {d: s for d, s in routes.items() if s != session_id}
    return routes
