"""The shopping-session state machine: pure ``decide`` and ``apply``, no I/O.

Lifecycle::

    OPEN --Exit--> EXITED --Settle--> SETTLED
      |               |
      +--SendToStaffed+--> STAFFED --Settle--> SETTLED

Item events are accepted while OPEN only. Commands carry their own timestamps so
that ``decide`` stays a pure function; the service supplies them from its clock.
Standard library only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypeAlias

from cart.errors import InvalidCommand, SessionClosed
from cart.events import (
    Event,
    ItemPicked,
    ItemPutBack,
    SessionExited,
    SessionOpened,
    SessionSentToStaffed,
    SessionSettled,
)


class SessionStatus(enum.Enum):
    """Where a session is in its lifecycle."""

    OPEN = "open"
    EXITED = "exited"
    SETTLED = "settled"
    STAFFED = "staffed"


@dataclass(frozen=True)
class SessionState:
    """A session folded from its events.

    ``version`` is the number of events applied (the event log's last version).
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
    """

    kind: Literal["picked", "put_back"]
    product_code: str
    quantity: int
    device_id: str
    device_seq: int
    sensor_time: datetime
    confidence: float


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


Command: TypeAlias = OpenSession | RecordItem | Exit | Settle | SendToStaffed

_STAFFABLE = frozenset({SessionStatus.OPEN, SessionStatus.EXITED})
_SETTLEABLE = frozenset({SessionStatus.EXITED, SessionStatus.STAFFED})


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


def decide(state: SessionState | None, command: Command) -> list[Event]:
    """The events that ``command`` produces against ``state`` (None: no session yet).

    Raises SessionClosed for an item after the session left OPEN, and InvalidCommand
    for illegal transitions (open twice, act on a session never opened, settle before
    exit, exit twice, ...) or invalid command values.
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
    if isinstance(command, RecordItem):
        if status is not SessionStatus.OPEN:
            raise SessionClosed(state.session_id, status.value)
        return _item_event(command)
    if isinstance(command, Exit):
        _require(state, status is SessionStatus.OPEN, "exit")
        return SessionExited(at=command.at)
    if isinstance(command, Settle):
        _require(state, status in _SETTLEABLE, "settle")
        return SessionSettled(
            at=command.at, receipt_id=command.receipt_id, total_minor=command.total_minor
        )
    if isinstance(command, SendToStaffed):
        _require(state, status in _STAFFABLE, "send to staffed checkout")
        return SessionSentToStaffed(at=command.at, reason=command.reason)
    raise InvalidCommand(f"cannot {type(command).__name__} an existing session")


def _require(state: SessionState, allowed: bool, action: str) -> None:
    if not allowed:
        raise InvalidCommand(
            f"cannot {action} session {state.session_id!r} while {state.status.value}"
        )


def apply(state: SessionState | None, event: Event) -> SessionState:
    """The state after ``event``; fold a session's events in version order.

    Raises InvalidCommand when ``event`` cannot follow ``state`` (a corrupt history:
    an event before SessionOpened, a second SessionOpened, an item after OPEN, ...).
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
    if isinstance(event, ItemPicked | ItemPutBack):
        _require(state, status is SessionStatus.OPEN, "record an item on")
        return replace(state, item_event_count=state.item_event_count + 1)
    if isinstance(event, SessionExited):
        _require(state, status is SessionStatus.OPEN, "exit")
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
    raise InvalidCommand(f"unexpected event {type(event).__name__}")


def fold(events: Iterable[Event]) -> SessionState | None:
    """The state after applying ``events`` in order (None for no events).

    Raises InvalidCommand on a corrupt history (see :func:`apply`).
    """
    state: SessionState | None = None
    for event in events:
        state = apply(state, event)
    return state
