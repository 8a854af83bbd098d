"""Session use cases: load the log, fold, decide, append with the expected version.

Writers race (gates, devices, staff, several API workers); a lost race surfaces as
ConcurrencyConflict and the command is simply re-decided against the fresh log a
bounded number of times. DuplicateDeviceEvent is never retried: it is the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cart.errors import ConcurrencyConflict, InvalidCommand, SessionNotFound
from cart.event_store import EventStore, StoredEvent
from cart.events import Event
from cart.projections import CartContents, cart_contents
from cart.session import (
    Command,
    Exit,
    OpenSession,
    RecordItem,
    SendToStaffed,
    SessionState,
    Settle,
    apply,
    decide,
    fold,
)


class SessionService:
    """Commands and queries on shopping sessions over an :class:`EventStore`.

    ``clock`` returns the current timezone-aware UTC time; ``max_attempts`` bounds
    tries per command under ConcurrencyConflict; ``min_confidence`` is passed to
    :func:`cart.projections.cart_contents`.
    """

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], datetime],
        *,
        max_attempts: int = 3,
        min_confidence: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise InvalidCommand(f"max_attempts must be >= 1, got {max_attempts}")
        self._store = store
        self._clock = clock
        self._max_attempts = max_attempts
        self._min_confidence = min_confidence

    def open(
        self, session_id: str, shopper_id: str, store_id: str, entry_method: str
    ) -> SessionState:
        """Open a session now. Raises InvalidCommand if it exists or a value is invalid."""
        command = OpenSession(session_id, shopper_id, store_id, entry_method, self._clock())
        state, _, _ = self._execute(session_id, command)
        return state

    def record_item(self, session_id: str, item: RecordItem) -> StoredEvent:
        """Append one item event; returns it as stored.

        Raises SessionNotFound, SessionClosed (session no longer OPEN), InvalidCommand
        (invalid values), DuplicateDeviceEvent (device key already recorded; check
        ``same_payload``) and ConcurrencyConflict once the attempts are used up.
        """
        _, _, stored = self._execute(session_id, item)
        return stored[0]

    def exit(self, session_id: str) -> tuple[SessionState, CartContents]:
        """Close the session at the exit gate; returns the new state and the final cart.

        Raises SessionNotFound, InvalidCommand (not OPEN) or ConcurrencyConflict.
        """
        state, history, _ = self._execute(session_id, Exit(self._clock()))
        return state, cart_contents(history, min_confidence=self._min_confidence)

    def settle(self, session_id: str, receipt_id: str, total_minor: int) -> SessionState:
        """Mark an exited or staffed session paid (``total_minor`` in minor units).

        Raises SessionNotFound, InvalidCommand (not EXITED/STAFFED, bad values) or
        ConcurrencyConflict.
        """
        command = Settle(receipt_id, total_minor, self._clock())
        state, _, _ = self._execute(session_id, command)
        return state

    def send_to_staffed(self, session_id: str, reason: str) -> SessionState:
        """Queue an open or exited session for staffed checkout.

        Raises SessionNotFound, InvalidCommand (already staffed/settled, empty reason)
        or ConcurrencyConflict.
        """
        state, _, _ = self._execute(session_id, SendToStaffed(reason, self._clock()))
        return state

    def state(self, session_id: str) -> SessionState:
        """The session's current state. Raises SessionNotFound if it has no events."""
        state = fold(stored.event for stored in self._store.load(session_id))
        if state is None:
            raise SessionNotFound(session_id)
        return state

    def cart(self, session_id: str) -> CartContents:
        """The session's cart so far. Raises SessionNotFound if it has no events."""
        events = [stored.event for stored in self._store.load(session_id)]
        if not events:
            raise SessionNotFound(session_id)
        return cart_contents(events, min_confidence=self._min_confidence)

    def _execute(
        self, session_id: str, command: Command
    ) -> tuple[SessionState, list[Event], list[StoredEvent]]:
        """Decide and append ``command``; returns (new state, full history, new rows)."""
        for attempt in range(1, self._max_attempts + 1):
            history = [stored.event for stored in self._store.load(session_id)]
            state = fold(history)
            if state is None and not isinstance(command, OpenSession):
                raise SessionNotFound(session_id)
            new = decide(state, command)
            version = state.version if state is not None else 0
            try:
                stored = self._store.append(session_id, new, expected_version=version)
            except ConcurrencyConflict:
                if attempt == self._max_attempts:
                    raise
                continue
            for event in new:
                state = apply(state, event)
            assert state is not None  # decide always returns at least one event
            return state, history + new, stored
        raise AssertionError("unreachable: the last attempt returns or raises")
