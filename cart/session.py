"""The shopping-session state machine: pure ``decide`` and ``apply``, no I/O.

Lifecycle::

    OPEN --first device event--> SHOPPING --Exit--> EXITED --Settle--> SETTLED
      |                             |                 |
      +----------SendToStaffed------+-----------------+--> STAFFED --Settle--> SETTLED
      +----------Abandon (sweep)----+--> ABANDONED --SendToStaffed--> STAFFED

Device events (picks, put-backs, weighed items, smart-cart scans and scale changes,
flags) are accepted while the session is active (OPEN or SHOPPING) only, and only
when their sensor time is at most :data:`MAX_CLOCK_SKEW` ahead of the service clock.
Companions join while active; their smart carts are registered to the payer's
session, so their items land on the payer's cart. Commands carry their own
timestamps so that ``decide`` stays a pure function; the service supplies them
from its clock. Standard library only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from cart.errors import InvalidCommand, SessionClosed
from cart.events import (
    DEVICE_EVENT_TYPES,
    CartDeviceRegistered,
    CompanionJoined,
    DeviceEvent,
    Event,
    ItemPicked,
    ItemPutBack,
    SessionAbandoned,
    SessionExited,
    SessionOpened,
    SessionSentToStaffed,
    SessionSettled,
)

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far a device's sensor time may run ahead of the service clock before the
event is refused as coming from the future (a mis-set device clock would otherwise
reorder a whole cart)."""


class SessionStatus(enum.Enum):
    """Where a session is in its lifecycle."""

    OPEN = "open"
    SHOPPING = "shopping"
    EXITED = "exited"
    SETTLED = "settled"
    STAFFED = "staffed"
    ABANDONED = "abandoned"

    @property
    def is_active(self) -> bool:
        """True while the shopper is in the store (OPEN or SHOPPING)."""
        return self in _ACTIVE


_ACTIVE = frozenset({SessionStatus.OPEN, SessionStatus.SHOPPING})
_STAFFABLE = frozenset({*_ACTIVE, SessionStatus.EXITED, SessionStatus.ABANDONED})
_SETTLEABLE = frozenset({SessionStatus.EXITED, SessionStatus.STAFFED})


@dataclass(frozen=True)
class SessionState:
    """A session folded from its events.

    ``version`` is the number of events applied (the event log's last version).
    ``companions`` are companion shopper ids in join order; ``cart_devices`` maps
    registered smart-cart device ids to the shopper using them, as sorted pairs.
    Times are UTC; ``total_minor`` is in minor currency units.
    """

    session_id: str
    shopper_id: str
    store_id: str
    entry_method: str
    status: SessionStatus
    version: int
    opened_at: datetime
    exited_at: datetime | None = None
    settled_at: datetime | None = None
    receipt_id: str | None = None
    total_minor: int | None = None
    staffed_reason: str | None = None
    item_event_count: int = 0
    abandoned_at: datetime | None = None
    companions: tuple[str, ...] = ()
    cart_devices: tuple[tuple[str, str], ...] = ()

    @property
    def shoppers(self) -> tuple[str, ...]:
        """The payer followed by the companions."""
        return (self.shopper_id, *self.companions)


@dataclass(frozen=True)
class OpenSession:
    """Open a new session at ``at`` (UTC); refused if the session already exists."""

    session_id: str
    shopper_id: str
    store_id: str
    entry_method: str
    at: datetime


@dataclass(frozen=True)
class RecordItem:
    """Record one item observation; ``kind`` says picked or put back.

    Field meanings and units are those of :class:`cart.events.ItemPicked`.
    ``received_at`` is the service clock at receipt (UTC), set by the service; when
    given, a ``sensor_time`` more than :data:`MAX_CLOCK_SKEW` after it is refused.
    """

    kind: Literal["picked", "put_back"]
    product_code: str
    quantity: int
    device_id: str
    device_seq: int
    sensor_time: datetime
    confidence: float
    received_at: datetime | None = None


@dataclass(frozen=True)
class RecordDeviceEvent:
    """Record any device observation (weighed item, smart-cart scan or scale change,
    flag, pick, put-back) received at ``received_at`` (UTC, the service clock)."""

    event: DeviceEvent
    received_at: datetime | None = None


@dataclass(frozen=True)
class Exit:
    """The shopper passed the exit gate at ``at`` (UTC)."""

    at: datetime


@dataclass(frozen=True)
class Settle:
    """Close the session as paid: ``total_minor`` minor units on ``receipt_id``."""

    receipt_id: str
    total_minor: int
    at: datetime


@dataclass(frozen=True)
class SendToStaffed:
    """Send the session to the staffed checkout queue for ``reason``."""

    reason: str
    at: datetime


@dataclass(frozen=True)
class Abandon:
    """Close an active session nobody touched since ``idle_since`` (sweep at ``at``)."""

    at: datetime
    idle_since: datetime


@dataclass(frozen=True)
class JoinCompanion:
    """Admit ``companion_shopper_id`` on this session through ``gate_device_id``."""

    companion_shopper_id: str
    gate_device_id: str | None
    at: datetime


@dataclass(frozen=True)
class RegisterCartDevice:
    """Smart cart ``device_id`` is used by ``shopper_id`` (payer or companion)."""

    device_id: str
    shopper_id: str
    at: datetime


Command: TypeAlias = (
    OpenSession
    | RecordItem
    | RecordDeviceEvent
    | Exit
    | Settle
    | SendToStaffed
    | Abandon
    | JoinCompanion
    | RegisterCartDevice
)


def _item_event(command: RecordItem) -> ItemPicked | ItemPutBack:
    if command.kind == "picked":
        cls: type[ItemPicked] | type[ItemPutBack] = ItemPicked
    elif command.kind == "put_back":
        cls = ItemPutBack
    else:
        raise InvalidCommand(f"item kind must be 'picked' or 'put_back', got {command.kind!r}")
    return cls(
        product_code=command.product_code,
        quantity=command.quantity,
        device_id=command.device_id,
        device_seq=command.device_seq,
        sensor_time=command.sensor_time,
        confidence=command.confidence,
    )


def _device_event(command: RecordItem | RecordDeviceEvent) -> DeviceEvent:
    event = _item_event(command) if isinstance(command, RecordItem) else command.event
    if not isinstance(event, DEVICE_EVENT_TYPES):
        raise InvalidCommand(f"{type(event).__name__} is not a device event")
    received = command.received_at
    if received is not None and event.sensor_time > received + MAX_CLOCK_SKEW:
        raise InvalidCommand(
            f"sensor_time {event.sensor_time.isoformat()} is more than "
            f"{MAX_CLOCK_SKEW} ahead of the service clock {received.isoformat()}"
        )
    return event


def decide(state: SessionState | None, command: Command) -> list[Event]:
    """The events that ``command`` produces against ``state`` (None: no session yet).

    Raises SessionClosed for a device event after the session stopped being active,
    and InvalidCommand for illegal transitions (open twice, act on a session never
    opened, settle before exit, exit twice, a companion joining twice, a cart
    registered to a stranger, ...), a sensor time too far in the future, or invalid
    command values.
    """
    if isinstance(command, OpenSession):
        if state is not None:
            raise InvalidCommand(f"session {state.session_id!r} is already open")
        return [
            SessionOpened(
                session_id=command.session_id,
                shopper_id=command.shopper_id,
                store_id=command.store_id,
                entry_method=command.entry_method,
                at=command.at,
            )
        ]
    if state is None:
        raise InvalidCommand(f"{type(command).__name__} on a session that was never opened")
    return [_decide_on_existing(state, command)]


def _decide_on_existing(state: SessionState, command: Command) -> Event:
    status = state.status
    if isinstance(command, RecordItem | RecordDeviceEvent):
        if not status.is_active:
            raise SessionClosed(state.session_id, status.value)
        return _device_event(command)
    if isinstance(command, JoinCompanion | RegisterCartDevice):
        return _decide_membership(state, command)
    if isinstance(command, Exit):
        _require(state, status.is_active, "exit")
        return SessionExited(at=command.at)
    if isinstance(command, Settle):
        _require(state, status in _SETTLEABLE, "settle")
        return SessionSettled(
            at=command.at, receipt_id=command.receipt_id, total_minor=command.total_minor
        )
    if isinstance(command, SendToStaffed):
        _require(state, status in _STAFFABLE, "send to staffed checkout")
        return SessionSentToStaffed(at=command.at, reason=command.reason)
    if isinstance(command, Abandon):
        _require(state, status.is_active, "abandon")
        return SessionAbandoned(at=command.at, idle_since=command.idle_since)
    raise InvalidCommand(f"cannot {type(command).__name__} an existing session")


def _decide_membership(
    state: SessionState, command: JoinCompanion | RegisterCartDevice
) -> Event:
    if not state.status.is_active:
        raise SessionClosed(state.session_id, state.status.value)
    if isinstance(command, JoinCompanion):
        who = command.companion_shopper_id
        if who in state.shoppers:
            raise InvalidCommand(f"shopper {who!r} is already on session {state.session_id!r}")
        return CompanionJoined(who, command.gate_device_id, command.at)
    if command.shopper_id not in state.shoppers:
        raise InvalidCommand(
            f"shopper {command.shopper_id!r} is neither the payer nor a companion "
            f"on session {state.session_id!r}"
        )
    if command.device_id in dict(state.cart_devices):
        raise InvalidCommand(f"cart {command.device_id!r} is already registered to this session")
    return CartDeviceRegistered(command.device_id, command.shopper_id, command.at)


def _require(state: SessionState, allowed: bool, action: str) -> None:
    if not allowed:
        raise InvalidCommand(
            f"cannot {action} session {state.session_id!r} while {state.status.value}"
        )


def apply(state: SessionState | None, event: Event) -> SessionState:
    """The state after ``event``; fold a session's events in version order.

    Raises InvalidCommand when ``event`` cannot follow ``state`` (a corrupt history:
    an event before SessionOpened, a second SessionOpened, an item after the session
    stopped being active, ...).
    """
    if isinstance(event, SessionOpened):
        if state is not None:
            raise InvalidCommand(f"session {state.session_id!r} opened twice in its history")
        return SessionState(
            session_id=event.session_id,
            shopper_id=event.shopper_id,
            store_id=event.store_id,
            entry_method=event.entry_method,
            status=SessionStatus.OPEN,
            version=1,
            opened_at=event.at,
        )
    if state is None:
        raise InvalidCommand(f"{type(event).__name__} before SessionOpened in a history")
    return replace(_apply_to_existing(state, event), version=state.version + 1)


def _apply_to_existing(state: SessionState, event: Event) -> SessionState:
    status = state.status
    if isinstance(event, DEVICE_EVENT_TYPES):
        return apply_device_events(state, 1)
    if isinstance(event, CompanionJoined):
        _require(state, status.is_active, "join")
        return replace(state, companions=(*state.companions, event.companion_shopper_id))
    if isinstance(event, CartDeviceRegistered):
        _require(state, status.is_active, "register a cart on")
        devices = tuple(sorted({*state.cart_devices, (event.device_id, event.shopper_id)}))
        return replace(state, cart_devices=devices)
    if isinstance(event, SessionExited):
        _require(state, status.is_active, "exit")
        return replace(state, status=SessionStatus.EXITED, exited_at=event.at)
    if isinstance(event, SessionSettled):
        _require(state, status in _SETTLEABLE, "settle")
        return replace(
            state,
            status=SessionStatus.SETTLED,
            settled_at=event.at,
            receipt_id=event.receipt_id,
            total_minor=event.total_minor,
        )
    if isinstance(event, SessionSentToStaffed):
        _require(state, status in _STAFFABLE, "send to staffed checkout")
        return replace(state, status=SessionStatus.STAFFED, staffed_reason=event.reason)
    if isinstance(event, SessionAbandoned):
        _require(state, status.is_active, "abandon")
        return replace(state, status=SessionStatus.ABANDONED, abandoned_at=event.at)
    raise InvalidCommand(f"unexpected event {type(event).__name__}")


def apply_device_events(state: SessionState, count: int) -> SessionState:
    """``state`` after ``count`` device events (the version is the caller's business).

    Device events only count and move OPEN to SHOPPING, so a writer that loaded
    only the session's control events (see
    :meth:`cart.event_store.EventStore.load_control`) can skip them.
    Raises InvalidCommand when the session is not active.
    """
    _require(state, state.status.is_active, "record an item on")
    status = SessionStatus.SHOPPING if count > 0 else state.status
    return replace(state, status=status, item_event_count=state.item_event_count + count)


def fold(events: Iterable[Event]) -> SessionState | None:
    """The state after applying ``events`` in order (None for no events).

    Raises InvalidCommand on a corrupt history (see :func:`apply`).
    """
    state: SessionState | None = None
    for event in events:
        state = apply(state, event)
    return state


def fold_control(control: Iterable[Event], version: int) -> SessionState | None:
    """The state from a session's control events (everything but device events) and
    the log's current ``version``; equal to :func:`fold` over the whole log.

    Device events only move OPEN to SHOPPING and count, so they need not be loaded.
    Raises InvalidCommand on a corrupt history or a ``version`` below the control count.
    """
    state = fold(control)
    if state is None:
        return None
    devices = version - state.version
    if devices < 0:
        raise InvalidCommand(f"version {version} is below the {state.version} control events")
    status = state.status
    if devices > 0 and status is SessionStatus.OPEN:
        status = SessionStatus.SHOPPING
    return replace(state, status=status, item_event_count=devices, version=version)
