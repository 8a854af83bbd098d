"""Cart contents derived from a session's item events. Standard library only.

Devices deliver late and out of order, so the cart is computed over item events
sorted by (sensor_time, device_id, device_seq), never by arrival. The result is the
same for any permutation of the same events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from cart.errors import InvalidCommand
from cart.events import Event, ItemEvent, ItemPicked, ItemPutBack


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


@dataclass(frozen=True)
class CartFlag:
    """One item event set aside for review, identified by its device key."""

    reason: FlagReason
    product_code: str
    device_id: str
    device_seq: int


@dataclass(frozen=True)
class CartContents:
    """The cart: ``lines`` maps product code -> quantity (units, always > 0).

    ``flags`` lists events for review, in sensor order.
    """

    lines: dict[str, int] = field(default_factory=dict)
    flags: list[CartFlag] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        """True when at least one event was flagged."""
        return bool(self.flags)


def _order_key(event: ItemEvent) -> tuple[object, ...]:
    # The trailing fields only matter for events sharing a device key (which the
    # event store refuses); they keep the order total so any permutation agrees.
    return (
        event.sensor_time,
        event.device_id,
        event.device_seq,
        type(event).__name__,
        event.product_code,
        event.quantity,
        event.confidence,
    )


def _flag(reason: FlagReason, event: ItemEvent) -> CartFlag:
    return CartFlag(reason, event.product_code, event.device_id, event.device_seq)


def cart_contents(events: Iterable[Event], *, min_confidence: float = 0.0) -> CartContents:
    """The cart after the item events in ``events`` (other event types are ignored).

    Events with ``confidence < min_confidence`` are flagged and left out. A put-back
    of more units than the cart holds at that sensor time is flagged and clamps the
    line at zero. A second event with an already seen (device id, device sequence)
    is ignored, and flagged when its content differs.
    Raises InvalidCommand when ``min_confidence`` is outside [0, 1].
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidCommand(f"min_confidence must be within [0, 1], got {min_confidence}")
    items = sorted((e for e in events if isinstance(e, ItemPicked | ItemPutBack)), key=_order_key)
    lines: dict[str, int] = {}
    flags: list[CartFlag] = []
    seen: dict[tuple[str, int], ItemEvent] = {}
    for event in items:
        earlier = seen.get(event.device_key)
        if earlier is not None:
            if earlier != event:
                flags.append(_flag(FlagReason.CONFLICTING_DUPLICATE, event))
            continue
        seen[event.device_key] = event
        if event.confidence < min_confidence:
            flags.append(_flag(FlagReason.LOW_CONFIDENCE, event))
            continue
        held = lines.get(event.product_code, 0)
        if isinstance(event, ItemPicked):
            lines[event.product_code] = held + event.quantity
            continue
        if held == 0:
            flags.append(_flag(FlagReason.PUT_BACK_NOT_PICKED, event))
        elif event.quantity > held:
            flags.append(_flag(FlagReason.PUT_BACK_EXCEEDS_PICKED, event))
        lines[event.product_code] = max(0, held - event.quantity)
    return CartContents(
        lines={code: qty for code, qty in sorted(lines.items()) if qty > 0}, flags=flags
    )
