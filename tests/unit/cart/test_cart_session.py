"""Session state machine: every legal transition and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cart.errors import InvalidCommand, SessionClosed
from cart.events import (
    ItemPicked,
    ItemPutBack,
    SessionExited,
    SessionOpened,
    SessionSentToStaffed,
    SessionSettled,
)
from cart.session import (
    Command,
    Exit,
    OpenSession,
    RecordItem,
    SendToStaffed,
    SessionState,
    SessionStatus,
    Settle,
    apply,
    decide,
    fold,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
OPEN = OpenSession("s-1", "shopper-1", "store-1", "palm", T0)
EXIT = Exit(T0 + timedelta(minutes=10))
SETTLE = Settle("r-1", 450, T0 + timedelta(minutes=11))
STAFF = SendToStaffed("capture declined", T0 + timedelta(minutes=11))


def pick(seq: int = 1, kind: str = "picked") -> RecordItem:
    return RecordItem(kind, "0001", 1, "plate-1", seq, T0 + timedelta(seconds=seq), 0.9)  # type: ignore[arg-type]


def run(*commands: Command) -> SessionState:
    """Decide and apply each command in turn, as the service does."""
    state: SessionState | None = None
    for command in commands:
        for event in decide(state, command):
            state = apply(state, event)
    assert state is not None
    return state


def test_open_produces_session_opened_and_open_state() -> None:
    events = decide(None, OPEN)
    assert events == [SessionOpened("s-1", "shopper-1", "store-1", "palm", T0)]
    state = apply(None, events[0])
    assert (state.status, state.version, state.opened_at) == (SessionStatus.OPEN, 1, T0)
    assert (state.session_id, state.shopper_id, state.store_id) == ("s-1", "shopper-1", "store-1")


def test_items_while_open_become_item_events() -> None:
    state = run(OPEN)
    assert decide(state, pick(5)) == [
        ItemPicked("0001", 1, "plate-1", 5, T0 + timedelta(seconds=5), 0.9)
    ]
    assert decide(state, pick(6, "put_back")) == [
        ItemPutBack("0001", 1, "plate-1", 6, T0 + timedelta(seconds=6), 0.9)
    ]
    after = run(OPEN, pick(1), pick(2, "put_back"))
    assert (after.version, after.item_event_count, after.status) == (3, 2, SessionStatus.SHOPPING)


def test_happy_path_open_exit_settle() -> None:
    state = run(OPEN, pick(1), EXIT, SETTLE)
    assert state.status is SessionStatus.SETTLED
    assert state.version == 4
    assert state.exited_at == EXIT.at and state.settled_at == SETTLE.at
    assert (state.receipt_id, state.total_minor) == ("r-1", 450)


def test_staffed_after_exit_can_be_settled_by_staff() -> None:
    staffed = run(OPEN, EXIT, STAFF)
    assert staffed.status is SessionStatus.STAFFED
    assert staffed.staffed_reason == "capture declined"
    settled = run(OPEN, EXIT, STAFF, SETTLE)
    assert settled.status is SessionStatus.SETTLED and settled.version == 4


def test_open_session_can_go_straight_to_staffed() -> None:
    assert run(OPEN, STAFF).status is SessionStatus.STAFFED


@pytest.mark.parametrize(
    ("history", "status"),
    [
        ((OPEN, EXIT), "exited"),
        ((OPEN, EXIT, SETTLE), "settled"),
        ((OPEN, STAFF), "staffed"),
    ],
)
def test_items_after_open_raise_session_closed(history: tuple[Command, ...], status: str) -> None:
    state = run(*history)
    with pytest.raises(SessionClosed) as info:
        decide(state, pick(9))
    assert (info.value.session_id, info.value.status) == ("s-1", status)


@pytest.mark.parametrize(
    ("history", "command", "message"),
    [
        ((OPEN,), OPEN, "already open"),
        ((OPEN,), SETTLE, "cannot settle .* while open"),
        ((OPEN, EXIT), EXIT, "cannot exit .* while exited"),
        ((OPEN, EXIT, SETTLE), SETTLE, "while settled"),
        ((OPEN, EXIT, SETTLE), STAFF, "while settled"),
        ((OPEN, STAFF), STAFF, "while staffed"),
        ((OPEN, STAFF), EXIT, "while staffed"),
    ],
)
def test_illegal_transitions_raise_invalid_command(
    history: tuple[Command, ...], command: Command, message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message):
        decide(run(*history), command)


@pytest.mark.parametrize("command", [pick(1), EXIT, SETTLE, STAFF])
def test_commands_on_unopened_session_are_refused(command: Command) -> None:
    with pytest.raises(InvalidCommand, match="never opened"):
        decide(None, command)


def test_invalid_values_in_commands_are_refused() -> None:
    state = run(OPEN)
    bad_kind = RecordItem("stolen", "0001", 1, "d", 1, T0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="kind"):
        decide(state, bad_kind)
    with pytest.raises(InvalidCommand, match="quantity"):
        decide(state, RecordItem("picked", "0001", 0, "d", 1, T0, 0.5))
    with pytest.raises(InvalidCommand, match="timezone-aware"):
        decide(state, Exit(datetime(2024, 5, 1, 10, 0)))
    with pytest.raises(InvalidCommand, match="total_minor"):
        decide(run(OPEN, EXIT), Settle("r", -5, T0))


def test_apply_refuses_a_corrupt_history() -> None:
    opened = SessionOpened("s-1", "p", "st", "palm", T0)
    with pytest.raises(InvalidCommand, match="before SessionOpened"):
        apply(None, SessionExited(T0))
    with pytest.raises(InvalidCommand, match="opened twice"):
        fold([opened, opened])
    with pytest.raises(InvalidCommand, match="record an item"):
        fold([opened, SessionExited(T0), ItemPicked("a", 1, "d", 1, T0, 1.0)])
    with pytest.raises(InvalidCommand, match="settle"):
        fold([opened, SessionSettled(T0, "r", 0)])
    with pytest.raises(InvalidCommand, match="staffed"):
        fold([opened, SessionSentToStaffed(T0, "x"), SessionSentToStaffed(T0, "y")])


def test_fold_of_nothing_is_none() -> None:
    assert fold([]) is None
