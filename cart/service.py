"""Session use cases: load the log, fold, decide, append with the expected version.

Writers race (gates, devices, staff, several API workers); a lost race surfaces as
ConcurrencyConflict and the command is simply re-decided against the fresh log a
bounded number of times. DuplicateDeviceEvent is never retried: it is the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from cart.errors import (
    CartError,
    ConcurrencyConflict,
    DuplicateDeviceEvent,
    InvalidCommand,
    SessionClosed,
    SessionNotFound,
)
from cart.event_store import EventStore, SessionBatch, StoredEvent
from cart.events import DeviceEvent, Event
from cart.projections import CartContents, cart_contents
from cart.session import (
    Abandon,
    Command,
    Exit,
    JoinCompanion,
    OpenSession,
    RecordDeviceEvent,
    RecordItem,
    RegisterCartDevice,
    SendToStaffed,
    SessionState,
    SessionStatus,
    Settle,
    apply,
    apply_device_events,
    decide,
    fold,
    fold_control,
)


@dataclass(frozen=True)
class _Plan:
    """One session's part of an ingest attempt: its head and the decided items."""

    session_id: str
    state: SessionState
    rejected: dict[int, ItemResult]
    accepted: list[tuple[int, Event]]


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one item of :meth:`SessionService.record_items`, in input order.

    ``outcome`` is ``"recorded"`` (``stored`` set), ``"duplicate"`` (a replay of a
    stored device key: acknowledge it), ``"conflicting_duplicate"`` (the device key is
    stored with other content: a device bug) or ``"rejected"`` (``reason`` says why;
    nothing stored).
    """

    index: int
    outcome: Literal["recorded", "duplicate", "conflicting_duplicate", "rejected"]
    stored: StoredEvent | None = None
    reason: str | None = None


class SessionService:
    """Commands and queries on shopping sessions over an :class:`EventStore`.

    ``clock`` returns the current timezone-aware UTC time; ``max_attempts`` bounds
    tries per command under ConcurrencyConflict; ``min_confidence`` is passed to
    :func:`cart.projections.cart_contents`; ``max_cached_sessions`` bounds the heads
    (state and version) that :meth:`record_items` keeps between calls, so a batch
    usually needs no read before its append (optimistic concurrency catches stale ones).
    """

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], datetime],
        *,
        max_attempts: int = 10,
        min_confidence: float = 0.0,
        max_cached_sessions: int = 4096,
    ) -> None:
        if max_attempts < 1:
            raise InvalidCommand(f"max_attempts must be >= 1, got {max_attempts}")
        self._store = store
        self._clock = clock
        self._max_attempts = max_attempts
        self._min_confidence = min_confidence
        self._heads: dict[str, SessionState] = {}
        self._heads_lock = threading.Lock()  # one service may serve several threads
        self._max_cached = max_cached_sessions

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
        _, _, stored = self._execute(session_id, replace(item, received_at=self._clock()))
        return stored[0]

    def record_items(
        self, session_id: str, items: Sequence[RecordItem | DeviceEvent]
    ) -> list[ItemResult]:
        """Append many device observations in one transaction; one result per item.

        Invalid items are rejected with their reason and duplicates reported, not
        raised; the rest are stored together (one version check: the session's control
        events and current version, never its whole log). Raises SessionNotFound,
        SessionClosed (session not active: nothing stored) and ConcurrencyConflict once
        the attempts are used up.
        """
        outcome = self._record({session_id: items})[session_id]
        if isinstance(outcome, CartError):
            raise outcome
        return outcome

    def record_many(
        self, batches: Mapping[str, Sequence[RecordItem | DeviceEvent]]
    ) -> dict[str, list[ItemResult]]:
        """:meth:`record_items` for several sessions in one transaction (a gateway flush
        of what its devices sent); returns each session's results, per item in order.

        A session that is unknown or no longer active gets every item rejected with that
        reason (nothing stored for it) instead of failing the others. Raises
        ConcurrencyConflict once the attempts are used up (nothing stored).
        """
        results: dict[str, list[ItemResult]] = {}
        for session_id, outcome in self._record(batches).items():
            if isinstance(outcome, CartError):
                outcome = [ItemResult(i, "rejected", reason=outcome.reason)
                           for i in range(len(batches[session_id]))]
            results[session_id] = outcome
        return results

    def _record(
        self, batches: Mapping[str, Sequence[RecordItem | DeviceEvent]]
    ) -> dict[str, list[ItemResult] | CartError]:
        """Decide and append ``batches`` in one ``append_many``, retried on conflict with
        the stale heads reloaded; a session that cannot take items maps to its error."""
        with self._heads_lock:
            cached = {sid: self._heads.pop(sid, None) for sid in batches}
        heads = {sid: state for sid, state in cached.items() if state is not None}
        for attempt in range(1, self._max_attempts + 1):
            now = self._clock()
            results: dict[str, list[ItemResult] | CartError] = {}
            plans: list[_Plan] = []
            for session_id, items in batches.items():
                try:
                    state = heads.get(session_id) or self._load_head(session_id)
                    heads[session_id] = state
                    plans.append(_Plan(session_id, state, *self._decide_items(state, items, now)))
                except (SessionNotFound, SessionClosed) as exc:
                    results[session_id] = exc
            try:
                outcomes = self._store.append_many([
                    SessionBatch(p.session_id, [e for _, e in p.accepted], p.state.version)
                    for p in plans])
            except ConcurrencyConflict as exc:
                if attempt == self._max_attempts:
                    raise
                stale = exc.session_id if exc.actual_version is not None else None
                heads = {} if stale is None else {k: v for k, v in heads.items() if k != stale}
                continue
            for plan, outcome in zip(plans, outcomes, strict=True):
                self._remember(plan.session_id, plan.state, len(outcome.stored))
                results[plan.session_id] = _item_results(
                    plan.rejected, plan.accepted, outcome.stored, outcome.duplicates)
            return results
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _load_head(self, session_id: str) -> SessionState:
        version, control = self._store.load_control(session_id)
        state = fold_control((s.event for s in control), version)
        if state is None:
            raise SessionNotFound(session_id)
        return state

    def _decide_items(
        self, state: SessionState, items: Sequence[RecordItem | DeviceEvent], now: datetime
    ) -> tuple[dict[int, ItemResult], list[tuple[int, Event]]]:
        """(rejected items' results by index, accepted (index, event) pairs); raises
        SessionClosed when the session takes no more items."""
        rejected: dict[int, ItemResult] = {}
        accepted: list[tuple[int, Event]] = []
        for index, item in enumerate(items):
            try:
                accepted.append((index, self._decide_item(state, item, now)))
            except InvalidCommand as exc:
                rejected[index] = ItemResult(index, "rejected", reason=exc.reason)
        return rejected, accepted

    def _remember(self, session_id: str, state: SessionState, appended: int) -> None:
        """Keep the head of a recently written session, ``state`` after ``appended``
        device events (most recent last, bounded).

        A stale head is harmless: the append expecting its version fails with
        ConcurrencyConflict and the next attempt reloads from the store.
        """
        if appended:
            state = replace(apply_device_events(state, appended), version=state.version + appended)
        with self._heads_lock:
            self._heads.pop(session_id, None)  # re-inserted: most recent last
            self._heads[session_id] = state
            if len(self._heads) > self._max_cached:
                del self._heads[next(iter(self._heads))]

    @staticmethod
    def _decide_item(
        state: SessionState, item: RecordItem | DeviceEvent, now: datetime
    ) -> Event:
        if isinstance(item, RecordItem):
            command: Command = replace(item, received_at=now)
        else:
            command = RecordDeviceEvent(item, received_at=now)
        return decide(state, command)[0]

    def record_device_event(self, session_id: str, event: DeviceEvent) -> StoredEvent:
        """Append one device observation (weighed item, smart-cart scan or scale change,
        flag, pick, put-back); errors as :meth:`record_item`."""
        command = RecordDeviceEvent(event, received_at=self._clock())
        _, _, stored = self._execute(session_id, command)
        return stored[0]

    def join_companion(
        self, session_id: str, companion_shopper_id: str, gate_device_id: str | None = None
    ) -> SessionState:
        """Admit a companion on the payer's session (group entry at ``gate_device_id``).

        Raises SessionNotFound, SessionClosed (session not active), InvalidCommand
        (already on the session, invalid id) or ConcurrencyConflict.
        """
        command = JoinCompanion(companion_shopper_id, gate_device_id, self._clock())
        state, _, _ = self._execute(session_id, command)
        return state

    def register_cart_device(
        self, session_id: str, device_id: str, shopper_id: str
    ) -> SessionState:
        """Register smart cart ``device_id`` of ``shopper_id`` (payer or companion) to
        the session, so its items land on the payer's cart. Errors as
        :meth:`join_companion` (InvalidCommand also for a shopper not on the session)."""
        command = RegisterCartDevice(device_id, shopper_id, self._clock())
        state, _, _ = self._execute(session_id, command)
        return state

    def abandon_stale(self, older_than: timedelta, *, limit: int = 1000) -> list[str]:
        """Close active sessions with no event recorded for ``older_than`` as ABANDONED.

        A sweep command (run it periodically). Returns the ids it abandoned; a
        session that became active again or was closed meanwhile is skipped.
        Raises InvalidCommand when ``older_than`` is not positive.
        """
        if older_than <= timedelta(0):
            raise InvalidCommand(f"older_than must be positive, got {older_than}")
        now = self._clock()
        cutoff = now - older_than
        abandoned: list[str] = []
        for session_id in self._store.idle_sessions(cutoff, limit):
            try:
                self._execute(session_id, Abandon(at=now, idle_since=cutoff))
            except CartError:
                continue  # closed or touched concurrently: not abandoned by this sweep
            abandoned.append(session_id)
        return abandoned

    def exit(self, session_id: str) -> tuple[SessionState, CartContents]:
        """Close the session at the exit gate; returns the new state and the final cart.

        Raises SessionNotFound, InvalidCommand (not OPEN) or ConcurrencyConflict.
        """
        state, history, _ = self._execute(session_id, Exit(self._clock()))
        return state, cart_contents(history, min_confidence=self._min_confidence)

    def close_at_exit(self, session_id: str) -> tuple[SessionState, CartContents, bool]:
        """Close the session at the exit gate if it is still active, else leave it as it is;
        one read of its log either way (for an exit that may be a retry).

        Returns (the state after, the final cart, True when this call closed it). A
        session already closed (exited, settled, staffed, abandoned) is returned
        unchanged with False rather than refused. Raises SessionNotFound, or
        ConcurrencyConflict once the attempts are used up.
        """
        state, history, stored = self._execute(session_id, Exit(self._clock()),
                                               only_if_active=True)
        return state, cart_contents(history, min_confidence=self._min_confidence), bool(stored)

    def settle(self, session_id: str, receipt_id: str, total_minor: int) -> SessionState:
        """Mark an exited or staffed session paid (``total_minor`` in minor units).

        Decided against the session's head, not its whole log (see :meth:`_execute_on_head`).
        Raises SessionNotFound, InvalidCommand (not EXITED/STAFFED, bad values) or
        ConcurrencyConflict.
        """
        return self._execute_on_head(session_id, Settle(receipt_id, total_minor, self._clock()))

    def settle_once(self, session_id: str, receipt_id: str, total_minor: int) -> SessionState:
        """:meth:`settle`, except that a session already settled on ``receipt_id`` is
        returned as it stands: a second settle of the same receipt (a retried or
        concurrent close, an exit that took over another's lease) is the same fact, not
        an error.

        Raises SessionNotFound, InvalidCommand (not EXITED/STAFFED and not settled on
        ``receipt_id``, bad values) or ConcurrencyConflict.
        """
        try:
            return self.settle(session_id, receipt_id, total_minor)
        except InvalidCommand:
            state = self.state(session_id)
            if state.status != SessionStatus.SETTLED or state.receipt_id != receipt_id:
                raise
            return state

    def send_to_staffed(self, session_id: str, reason: str) -> SessionState:
        """Queue an open or exited session for staffed checkout.

        Decided against the session's head, not its whole log (see :meth:`_execute_on_head`).
        Raises SessionNotFound, InvalidCommand (already staffed/settled, empty reason)
        or ConcurrencyConflict.
        """
        return self._execute_on_head(session_id, SendToStaffed(reason, self._clock()))

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

    def _execute_on_head(self, session_id: str, command: Command) -> SessionState:
        """Decide and append a lifecycle ``command`` against the session's head (state and
        version): the one this service remembered from its last write of the session, else
        one folded from the control events (:meth:`EventStore.load_control`), so neither
        reads the device events. The append expects the head's version: a stale head makes
        it fail with ConcurrencyConflict, and a remembered head that refuses the command is
        not trusted either; both are decided again on a head loaded from the store.

        Raises SessionNotFound, InvalidCommand or SessionClosed (refused by a loaded
        head), and ConcurrencyConflict once the attempts are used up.
        """
        with self._heads_lock:
            state: SessionState | None = self._heads.get(session_id)
        conflicts = 0
        while True:
            remembered = state is not None
            if state is None:
                state = self._load_head(session_id)
            try:
                new = decide(state, command)
            except CartError:
                if not remembered:
                    raise
                state = None  # the remembered head may be stale: decide on the store's
                continue
            try:
                self._store.append(session_id, new, expected_version=state.version)
            except ConcurrencyConflict:
                conflicts += 1
                if conflicts == self._max_attempts:
                    raise
                state = None
                continue
            for event in new:
                state = apply(state, event)
            self._remember(session_id, state, 0)
            return state

    def _execute(
        self, session_id: str, command: Command, *, only_if_active: bool = False
    ) -> tuple[SessionState, list[Event], list[StoredEvent]]:
        """Decide and append ``command``; returns (new state, full history, new rows).

        ``only_if_active``: a session no longer active is returned as it is, with no new
        rows, instead of having ``command`` decided (and refused) on it.
        """
        for attempt in range(1, self._max_attempts + 1):
            history = [stored.event for stored in self._store.load(session_id)]
            state = fold(history)
            if state is None and not isinstance(command, OpenSession):
                raise SessionNotFound(session_id)
            if only_if_active and state is not None and not state.status.is_active:
                self._remember(session_id, state, 0)
                return state, history, []
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
            self._remember(session_id, state, 0)  # the next item batch needs no read
            return state, history + new, stored
        raise AssertionError("unreachable: the last attempt returns or raises")


def _item_results(
    rejected: dict[int, ItemResult],
    accepted: list[tuple[int, Event]],
    stored: list[StoredEvent],
    duplicates: list[DuplicateDeviceEvent],
) -> list[ItemResult]:
    """Merge per-item outcomes back into input order.

    The store keeps the accepted events' order and skips duplicates in order, and the
    kept events have distinct device keys, so one pass pairs them up.
    """
    results = dict(rejected)
    kept, skipped = iter(stored), iter(duplicates)
    upcoming = next(kept, None)
    for index, event in accepted:
        if upcoming is not None and upcoming.event == event:
            results[index] = ItemResult(index, "recorded", stored=upcoming)
            upcoming = next(kept, None)
            continue
        dup = next(skipped)
        outcome: Literal["duplicate", "conflicting_duplicate"] = (
            "duplicate" if dup.same_payload else "conflicting_duplicate"
        )
        results[index] = ItemResult(index, outcome, reason=dup.reason)
    return [results[i] for i in sorted(results)]
