"""The event store port and its in-memory implementation.

Each session has its own log with versions 1, 2, 3, ...; every stored event also
gets a global ``position`` that only grows, so projections can follow one feed.
Appends are optimistic (``expected_version``) and idempotent per device observation
(an item event's (device id, device sequence) is stored at most once, store-wide).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeAlias

from cart.errors import ConcurrencyConflict, DuplicateDeviceEvent, InvalidCommand
from cart.events import (
    DEVICE_EVENT_TYPES,
    EVENT_TYPES,
    MAX_ID_LENGTH,
    DeviceEvent,
    Event,
    SessionAbandoned,
    SessionExited,
    SessionOpened,
    SessionSentToStaffed,
    SessionSettled,
)


@dataclass(frozen=True)
class StoredEvent:
    """An event as recorded: its session, 1-based ``version`` within the session,
    global ``position`` (increasing across all sessions) and ``recorded_at`` (UTC)."""

    session_id: str
    version: int
    position: int
    event: Event
    recorded_at: datetime


@dataclass(frozen=True)
class AppendResult:
    """What :meth:`EventStore.append_batch` did: the events it stored (in batch order)
    and, for every device event it skipped, the duplicate it was (``same_payload``
    False for a conflicting reuse of a device sequence number)."""

    stored: list[StoredEvent]
    duplicates: list[DuplicateDeviceEvent]


@dataclass(frozen=True)
class SessionBatch:
    """One session's part of :meth:`EventStore.append_many`: ``events`` to store after
    version ``expected_version`` (0: new session) of ``session_id``."""

    session_id: str
    events: Sequence[Event]
    expected_version: int


TERMINAL_EVENT_TYPES = (SessionExited, SessionSettled, SessionSentToStaffed, SessionAbandoned)
"""Events after which a session is no longer active (not a candidate for abandonment)."""


class EventStore(Protocol):
    """Append-only storage of session events."""

    def append(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> list[StoredEvent]:
        """Store ``events`` after version ``expected_version`` (0: new session), atomically.

        Returns the stored events in order. Raises ConcurrencyConflict when the
        session's current version is not ``expected_version``, DuplicateDeviceEvent
        when an item event's (device id, device sequence) is already stored (or
        repeated within the batch), and InvalidCommand for an invalid session id,
        a negative ``expected_version`` or a SessionOpened for another session.
        Nothing of the batch is stored when any error is raised.
        """
        ...

    def append_batch(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> AppendResult:
        """Like :meth:`append`, but device events whose (device id, device sequence) is
        already stored, or repeated within the batch, are skipped and reported instead
        of failing the batch. The others get consecutive versions after
        ``expected_version``. Raises ConcurrencyConflict (also when a concurrent writer
        stored one of the device keys first: retry) and InvalidCommand as :meth:`append`.
        """
        ...

    def append_many(self, batches: Sequence[SessionBatch]) -> list[AppendResult]:
        """:meth:`append_batch` for several sessions in one transaction (a gateway flush).

        Returns one result per batch, in order. All or nothing: raises
        ConcurrencyConflict when any session is not at its ``expected_version``
        (``actual_version`` None when a unique constraint refused the insert, so the
        stale session is unknown: reload them all), InvalidCommand as :meth:`append`
        and when a session id appears twice. A device key stored by an earlier batch
        of the same call is a duplicate in the later one.
        """
        ...

    def load(self, session_id: str) -> list[StoredEvent]:
        """The session's events in version order; an empty list for an unknown session."""
        ...

    def load_control(self, session_id: str) -> tuple[int, list[StoredEvent]]:
        """The session's current version (0: unknown) and its events other than device
        events, in version order: enough for :func:`cart.session.fold_control`."""
        ...

    def idle_sessions(self, before: datetime, limit: int) -> list[str]:
        """Up to ``limit`` ids of sessions with no terminal event (exit, settle,
        staffed, abandoned) whose last event was recorded before ``before`` (UTC),
        ordered by session id. Raises InvalidCommand when ``limit`` < 1."""
        ...

    def since(self, position: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with a global position > ``position``, in position order.

        Raises InvalidCommand when ``position`` < 0 or ``limit`` < 1.
        """
        ...


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def device_events(events: Sequence[Event]) -> list[DeviceEvent]:
    """The device events of ``events`` (those with a device key), in order."""
    return [e for e in events if isinstance(e, DEVICE_EVENT_TYPES)]


DeviceKey: TypeAlias = tuple[str, int]


def split_duplicates(
    events: Sequence[Event], stored_payloads: Callable[[list[DeviceEvent]], dict[DeviceKey, Event]]
) -> tuple[list[Event], list[DuplicateDeviceEvent]]:
    """``events`` without device events already stored (``stored_payloads`` returns the
    stored event per known device key) or repeated in the batch, plus the duplicates."""
    known = stored_payloads(device_events(events))
    keep: list[Event] = []
    duplicates: list[DuplicateDeviceEvent] = []
    for event in events:
        if isinstance(event, DEVICE_EVENT_TYPES):
            earlier = known.get(event.device_key)
            if earlier is not None:
                duplicates.append(
                    DuplicateDeviceEvent(event.device_id, event.device_seq, earlier == event)
                )
                continue
            known[event.device_key] = event
        keep.append(event)
    return keep, duplicates


def split_many(
    batches: Sequence[SessionBatch], known: dict[DeviceKey, Event]
) -> list[tuple[list[Event], list[DuplicateDeviceEvent]]]:
    """:func:`split_duplicates` over several batches in order; ``known`` holds the stored
    event per device key and learns every kept device event (so a key kept in one
    batch is a duplicate in a later one)."""
    return [split_duplicates(b.events, lambda _: known) for b in batches]


def check_many(batches: Sequence[SessionBatch]) -> None:
    """:func:`check_batch` (repeats allowed) for each batch; raises InvalidCommand also
    when a session id appears in two batches."""
    seen: set[str] = set()
    for batch in batches:
        check_batch(batch.session_id, batch.events, batch.expected_version, allow_repeats=True)
        if batch.session_id in seen:
            raise InvalidCommand(f"session {batch.session_id!r} appears twice in one append_many")
        seen.add(batch.session_id)


def check_batch(
    session_id: str, events: Sequence[Event], expected_version: int, *, allow_repeats: bool = False
) -> None:
    """Validation shared by every store, before touching storage.

    Raises InvalidCommand (bad session id, negative expected version, SessionOpened
    for another session) or DuplicateDeviceEvent (a device key repeated in the batch).
    """
    if not isinstance(session_id, str) or not session_id.strip():
        raise InvalidCommand(f"session_id must be a non-empty string, got {session_id!r}")
    if len(session_id) > MAX_ID_LENGTH:
        raise InvalidCommand(f"session_id is longer than {MAX_ID_LENGTH} characters")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidCommand(f"expected_version must be an integer, got {expected_version!r}")
    if expected_version < 0:
        raise InvalidCommand(f"expected_version must be >= 0, got {expected_version}")
    for event in events:
        if not isinstance(event, tuple(EVENT_TYPES.values())):
            raise InvalidCommand(f"{type(event).__name__} is not a cart event")
        if isinstance(event, SessionOpened) and event.session_id != session_id:
            raise InvalidCommand(
                f"SessionOpened for {event.session_id!r} appended to {session_id!r}"
            )
    if allow_repeats:
        return
    seen: dict[tuple[str, int], Event] = {}
    for item in device_events(events):
        earlier = seen.setdefault(item.device_key, item)
        if earlier is not item:
            raise DuplicateDeviceEvent(item.device_id, item.device_seq, earlier == item)


def check_recorded_at(value: datetime) -> datetime:
    """``value`` in UTC; raises InvalidCommand when the store's clock returned a naive time."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCommand("the event store clock must return timezone-aware datetimes")
    return value.astimezone(UTC)


class InMemoryEventStore:
    """An :class:`EventStore` held in process memory; thread-safe (one lock).

    ``clock`` supplies ``recorded_at`` (timezone-aware; defaults to the system clock).
    """

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.RLock()  # append_batch calls append
        self._log: list[StoredEvent] = []
        self._sessions: dict[str, list[StoredEvent]] = {}
        self._devices: dict[tuple[str, int], Event] = {}

    def append(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> list[StoredEvent]:
        """See :meth:`EventStore.append`."""
        check_batch(session_id, events, expected_version)
        with self._lock:
            current = len(self._sessions.get(session_id, []))
            if current != expected_version:
                raise ConcurrencyConflict(session_id, expected_version, current)
            for item in device_events(events):
                stored = self._devices.get(item.device_key)
                if stored is not None:
                    raise DuplicateDeviceEvent(item.device_id, item.device_seq, stored == item)
            recorded_at = check_recorded_at(self._clock())
            new = [
                StoredEvent(session_id, current + i, len(self._log) + i, event, recorded_at)
                for i, event in enumerate(events, start=1)
            ]
            self._log.extend(new)
            self._sessions.setdefault(session_id, []).extend(new)
            for item in device_events(events):
                self._devices[item.device_key] = item
            return new

    def append_batch(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> AppendResult:
        """See :meth:`EventStore.append_batch`."""
        return self.append_many([SessionBatch(session_id, events, expected_version)])[0]

    def append_many(self, batches: Sequence[SessionBatch]) -> list[AppendResult]:
        """See :meth:`EventStore.append_many`."""
        check_many(batches)
        with self._lock:
            for batch in batches:
                current = len(self._sessions.get(batch.session_id, []))
                if current != batch.expected_version:
                    raise ConcurrencyConflict(batch.session_id, batch.expected_version, current)
            keys = [e.device_key for b in batches for e in device_events(b.events)]
            known = {k: self._devices[k] for k in keys if k in self._devices}
            split = split_many(batches, known)
            # Every check passed: the appends below cannot fail, so the call is atomic.
            return [
                AppendResult(self.append(b.session_id, keep, expected_version=b.expected_version),
                             duplicates)
                for b, (keep, duplicates) in zip(batches, split, strict=True)
            ]

    def load_control(self, session_id: str) -> tuple[int, list[StoredEvent]]:
        """See :meth:`EventStore.load_control`."""
        with self._lock:
            log = self._sessions.get(session_id, [])
            control = [s for s in log if not isinstance(s.event, DEVICE_EVENT_TYPES)]
            return len(log), control

    def idle_sessions(self, before: datetime, limit: int) -> list[str]:
        """See :meth:`EventStore.idle_sessions`."""
        check_feed_args(0, limit)
        with self._lock:
            idle = [
                session_id for session_id, log in self._sessions.items()
                if log[-1].recorded_at < before
                and not any(isinstance(s.event, TERMINAL_EVENT_TYPES) for s in log)
            ]
        return sorted(idle)[:limit]

    def load(self, session_id: str) -> list[StoredEvent]:
        """See :meth:`EventStore.load`."""
        with self._lock:
            return list(self._sessions.get(session_id, []))

    def since(self, position: int, limit: int) -> list[StoredEvent]:
        """See :meth:`EventStore.since`."""
        check_feed_args(position, limit)
        with self._lock:
            # Positions are 1..n with no gaps, so position p sits at index p - 1.
            return self._log[position : position + limit]


def check_feed_args(position: int, limit: int) -> None:
    """Raises InvalidCommand when ``position`` < 0 or ``limit`` < 1."""
    if position < 0:
        raise InvalidCommand(f"position must be >= 0, got {position}")
    if limit < 1:
        raise InvalidCommand(f"limit must be >= 1, got {limit}")
