"""Reserving an attempt before the secret is checked (``reserve``), for both counters:
within the limit the attempt is counted at once (as under way); over it nothing stays
counted and TooManyAttempts says how long to wait (until the oldest failure leaves the
window when the failures alone reach the limit, 1 second when attempts under way are in
the way); a release takes the attempt back; the ``with`` block keeps it, as a failure for
the whole window, only when the caller said it failed; an attempt left under way (a
process killed during the check) stops counting after ``PENDING_MAX_S`` and is pruned;
and threads reserving at once (two engines on one SQLite file for the database counter)
never get more than the limit through, with or without releases in between."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.engine import make_engine
from storefront.db.models import FailedAttempt
from storefront.security.attempts import (
    PENDING_MAX_S,
    AttemptCounter,
    FailureWindow,
    Reservation,
    Tally,
    TooManyAttempts,
)
from storefront.security.attempts_sql import SqlFailureWindow, purge_expired_attempts
from tests.clocks import FakeClock


def _stored(attempt_sessions: sessionmaker[Session]) -> int:
    with attempt_sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(FailedAttempt)) or 0)


@pytest.fixture(params=["sql", "memory"])
def counter(request: pytest.FixtureRequest,
            attempt_sessions: sessionmaker[Session]) -> AttemptCounter:
    """Each counter, a 60-second window (the database one on a clock standing still)."""
    if request.param == "sql":
        return SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=FakeClock())
    return FailureWindow(window_s=60.0)


def test_within_the_limit_the_attempt_is_counted_at_once(counter: AttemptCounter) -> None:
    first = counter.reserve({"acct:ann": 2, "ip:x": 5}, "too many")
    assert counter.count("acct:ann")[0] == 1 and counter.count("ip:x")[0] == 1
    counter.reserve({"acct:ann": 2, "ip:x": 5}, "too many")
    assert counter.count("acct:ann")[0] == 2
    assert isinstance(first, Reservation) and not first.failed


def test_over_the_limit_raises_and_leaves_nothing_counted(counter: AttemptCounter) -> None:
    for _ in range(3):
        counter.reserve({"acct:ann": 3}, "x").count_as_failure()
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve({"ip:free": 10, "acct:ann": 3}, "too many failed logins")
    assert str(refused.value) == "too many failed logins"
    assert 59 <= refused.value.retry_after_s <= 61
    assert counter.count("acct:ann")[0] == 3  # the refused attempt is not a failure
    assert counter.count("ip:free") == (0, 0.0)  # nor for the key under its limit


def test_refused_reservations_write_no_row(attempt_sessions: sessionmaker[Session]) -> None:
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=FakeClock())
    window.add("k", "k")
    for _ in range(5):
        with pytest.raises(TooManyAttempts):
            window.reserve({"k": 2, "other": 9}, "x")
    assert _stored(attempt_sessions) == 2


def test_release_takes_the_attempt_back_once(counter: AttemptCounter) -> None:
    kept = counter.reserve({"acct:ann": 3, "ip:x": 3}, "x")
    taken_back = counter.reserve({"acct:ann": 3, "ip:x": 3}, "x")
    taken_back.release()
    taken_back.release()  # a second release does nothing more
    assert counter.count("acct:ann")[0] == 1 and counter.count("ip:x")[0] == 1
    kept.release()
    assert counter.count("acct:ann")[0] == 0 and counter.count("ip:x")[0] == 0


def test_released_slots_are_free_again_and_kept_ones_are_not(
        counter: AttemptCounter) -> None:
    limits = {"k": 3}
    a, b = counter.reserve(limits, "x"), counter.reserve(limits, "x")
    a.release()
    c = counter.reserve(limits, "x")
    counter.reserve(limits, "x")  # b, c and this one: 3
    with pytest.raises(TooManyAttempts):
        counter.reserve(limits, "x")
    c.release()
    counter.reserve(limits, "x")
    with pytest.raises(TooManyAttempts):
        counter.reserve(limits, "x")
    assert counter.count("k")[0] == 3 and not b.failed


def test_the_block_keeps_only_attempts_said_to_have_failed(counter: AttemptCounter) -> None:
    limits = {"acct:ann": 5}
    with counter.reserve(limits, "x"):
        assert counter.count("acct:ann")[0] == 1  # counted while under way
    assert counter.count("acct:ann")[0] == 0  # a success: released
    with pytest.raises(RuntimeError), counter.reserve(limits, "x"):
        raise RuntimeError("the database went away")
    assert counter.count("acct:ann")[0] == 0  # an unexpected error: released
    with pytest.raises(PermissionError), counter.reserve(limits, "x") as attempt:
        attempt.count_as_failure()
        raise PermissionError("wrong password")
    assert counter.count("acct:ann")[0] == 1  # a wrong guess stays counted
    assert attempt.failed


def test_no_keys_reserve_nothing(counter: AttemptCounter) -> None:
    with counter.reserve({}, "x") as attempt:
        attempt.count_as_failure()
    assert counter.count("") == (0, 0.0)


def test_retry_after_runs_to_the_oldest_counted_row(
        attempt_sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=clock)
    window.reserve({"k": 2}, "x").count_as_failure()
    clock.now += timedelta(seconds=10.5)
    window.reserve({"k": 2}, "x").count_as_failure()
    with pytest.raises(TooManyAttempts) as refused:
        window.reserve({"k": 2}, "x")
    assert refused.value.retry_after_s == 50  # int(49.5) + 1
    clock.now += timedelta(seconds=49.5)  # the first one has left the window
    window.reserve({"k": 2}, "x")


def test_a_reservation_past_the_first_read_is_refused_by_rows_committed_meanwhile(
        attempt_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The race itself: another process commits two attempts between this reservation's
    first read (which saw room) and its own write; its count with its row sees them."""
    clock = FakeClock()
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=clock)
    other = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=clock)
    window.add("k")
    reads: list[int] = []
    real_tallies = window.tallies

    def tallies_then_others_commit(keys: list[str]) -> dict[str, Tally]:
        seen = real_tallies(keys)
        reads.append(seen["k"].total)
        if len(reads) == 1:
            other.add("k")
            other.add("k")
        return seen

    monkeypatch.setattr(window, "tallies", tallies_then_others_commit)
    with pytest.raises(TooManyAttempts):
        window.reserve({"k": 3}, "x")
    assert reads == [1]  # room at first; then 3 others and its own row: over
    assert other.count("k")[0] == 3 and _stored(attempt_sessions) == 3  # its row rolled back


def _race(counter_of: Callable[[int], AttemptCounter], threads_n: int,
          act: Callable[[int, Reservation], None]) -> tuple[int, int]:
    """``threads_n`` threads reserving ``{"k": 5}`` at once (thread ``n`` on
    ``counter_of(n)``), each then calling ``act(n, reservation)``; (got, refused)."""
    start = threading.Barrier(threads_n)
    got, refused, errors = [], [], []

    def one(n: int) -> None:
        start.wait()
        try:
            reservation = counter_of(n).reserve({"k": 5, f"own:{n}": 1}, "x")
        except TooManyAttempts:
            refused.append(n)
            return
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
            return
        got.append(n)
        act(n, reservation)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return len(got), len(refused)


def _counters(request: pytest.FixtureRequest, attempt_sessions: sessionmaker[Session],
              tmp_path: Path) -> Callable[[int], AttemptCounter]:
    """The in-memory counter, or a database counter on each of two engines (two
    processes' connection pools) on one SQLite file, taken in turn."""
    if request.param == "memory":
        memory = FailureWindow(window_s=60.0)
        return lambda n: memory
    other = make_engine(f"sqlite:///{tmp_path / 'attempts.db'}")
    request.addfinalizer(other.dispose)
    windows = [SqlFailureWindow(s, window_s=60.0, namespace="race")
               for s in (attempt_sessions, sessionmaker(other))]
    return lambda n: windows[n % 2]


@pytest.fixture(params=["sql", "memory"])
def counters(request: pytest.FixtureRequest, attempt_sessions: sessionmaker[Session],
             tmp_path: Path) -> Callable[[int], AttemptCounter]:
    return _counters(request, attempt_sessions, tmp_path)


def test_of_threads_reserving_at_once_at_most_the_limit_get_through(
        counters: Callable[[int], AttemptCounter]) -> None:
    assert _race(counters, 40, lambda n, r: None) == (5, 35)  # exactly the limit
    assert _race(counters, 12, lambda n, r: None) == (0, 12)  # a second burst: none
    assert counters(0).count("k")[0] == 5 == counters(1).count("k")[0]


def test_releases_between_reservations_keep_the_accounting_right(
        counters: Callable[[int], AttemptCounter]) -> None:
    kept: list[int] = []
    lock = threading.Lock()
    rng = random.Random(7)
    keep = {n for n in range(40) if rng.random() < 0.3}

    def act(n: int, reservation: Reservation) -> None:
        if n in keep:
            with lock:
                kept.append(n)
        else:
            reservation.release()

    got, refused = _race(counters, 40, act)
    assert got + refused == 40 and len(kept) <= 5 and got >= 5
    assert counters(0).count("k")[0] == len(kept) == counters(1).count("k")[0]
    for n in range(40):  # every released thread's own key is free again
        assert counters(n).count(f"own:{n}")[0] == (1 if n in kept else 0)


Advance = Callable[[float], None]


@pytest.fixture(params=["sql", "memory"])
def timed(request: pytest.FixtureRequest,
          attempt_sessions: sessionmaker[Session]) -> tuple[AttemptCounter, Advance]:
    """Each counter (60-second window, the default pending bound) with a clock the test
    moves: ``advance(seconds)``."""
    if request.param == "sql":
        clock = FakeClock()

        def advance_utc(seconds: float) -> None:
            clock.now += timedelta(seconds=seconds)

        return SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t",
                                clock=clock), advance_utc
    now = [1000.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    return FailureWindow(window_s=60.0, clock=lambda: now[0]), advance


def test_refused_only_by_attempts_under_way_retry_after_one_second(
        timed: tuple[AttemptCounter, Advance]) -> None:
    """F1: a key at its limit only because attempts are still being checked refuses with
    Retry-After 1 (they end in a moment), not the whole window; once they end as
    successes the next attempt goes through."""
    counter, advance = timed
    limits = {"ip:kiosk": 3}
    under_way = [counter.reserve(limits, "x") for _ in range(3)]
    for refuse in (counter.refuse_when_over, counter.reserve):
        with pytest.raises(TooManyAttempts) as refused:
            refuse(limits, "x")
        assert refused.value.retry_after_s == 1
    advance(1.0)
    for attempt in under_way:
        attempt.release()  # three successes
    with counter.reserve(limits, "x"):
        pass
    assert counter.count("ip:kiosk") == (0, 0.0)


def test_failures_plus_attempts_under_way_retry_after_one_second(
        timed: tuple[AttemptCounter, Advance]) -> None:
    counter, advance = timed
    counter.reserve({"k": 3}, "x").count_as_failure()
    advance(5.0)
    counter.reserve({"k": 3}, "x").count_as_failure()
    pending = counter.reserve({"k": 3}, "x")
    with pytest.raises(TooManyAttempts) as refused:  # 2 failures + 1 under way
        counter.reserve({"k": 3}, "x")
    assert refused.value.retry_after_s == 1
    pending.count_as_failure()  # now the failures alone are at the limit
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve({"k": 3}, "x")
    assert refused.value.retry_after_s == 56  # the first failure leaves in 55 s, +1


def test_the_longest_wait_of_the_keys_refused_is_given(
        timed: tuple[AttemptCounter, Advance]) -> None:
    counter, _ = timed
    counter.reserve({"acct:ann": 1}, "x")  # under way: refuses acct:ann for a moment
    counter.reserve({"ip:x": 1}, "x").count_as_failure()  # a failure: for the window
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve({"acct:ann": 1, "ip:x": 1}, "x")
    assert refused.value.retry_after_s == 61


def test_a_failure_from_a_reservation_counts_for_the_whole_window(
        timed: tuple[AttemptCounter, Advance]) -> None:
    counter, advance = timed
    with pytest.raises(PermissionError), counter.reserve({"k": 1}, "x") as attempt:
        attempt.count_as_failure()
        raise PermissionError("wrong password")
    advance(PENDING_MAX_S + 1)  # well past the bound of attempts under way
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve({"k": 1}, "x")
    assert refused.value.retry_after_s == int(60 - PENDING_MAX_S - 1) + 1
    assert counter.count("k") == (1, 60 - PENDING_MAX_S - 1)
    advance(60 - PENDING_MAX_S - 1)  # its window, counted from the reservation, is over
    assert counter.count("k") == (0, 0.0)
    counter.reserve({"k": 1}, "x")


def test_attempts_left_under_way_stop_counting_after_the_pending_bound(
        timed: tuple[AttemptCounter, Advance]) -> None:
    """F4: a process killed during its checks never leaves the block: its attempts count
    as under way for ``PENDING_MAX_S`` only, then neither count nor block."""
    counter, advance = timed
    limits = {"acct:ann": 2}
    for _ in range(2):
        counter.reserve(limits, "x")  # the process dies: never released, never failed
    assert counter.count("acct:ann") == (2, PENDING_MAX_S)
    advance(PENDING_MAX_S - 0.5)
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve(limits, "x")
    assert refused.value.retry_after_s == 1
    advance(0.5)
    assert counter.count("acct:ann") == (0, 0.0)
    counter.reserve(limits, "x").count_as_failure()
    counter.reserve(limits, "x").count_as_failure()  # the limit is whole again: 2
    with pytest.raises(TooManyAttempts):
        counter.reserve(limits, "x")


def test_a_failure_counted_after_its_row_was_pruned_is_written_again(
        attempt_sessions: sessionmaker[Session]) -> None:
    """A check that outlived the pending bound: its row went with the pruning, the
    failure it turns out to be is still counted (from the reservation's time)."""
    clock = FakeClock()
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=clock)
    attempt = window.reserve({"k": 5, "ip:x": 5}, "x")
    clock.now += timedelta(seconds=PENDING_MAX_S)
    assert window.prune() == 2 and _stored(attempt_sessions) == 0
    attempt.count_as_failure()
    assert window.count("k") == (1, 60 - PENDING_MAX_S) == window.count("ip:x")
    assert _pending(attempt_sessions) == [False, False]


def _pending(attempt_sessions: sessionmaker[Session]) -> list[bool]:
    with attempt_sessions() as db:
        return list(db.scalars(sa.select(FailedAttempt.pending).order_by(FailedAttempt.id)))


def test_rows_left_under_way_are_pruned_after_the_pending_bound(
        attempt_sessions: sessionmaker[Session]) -> None:
    """A killed process's pending rows (one written as another process would have,
    with an old ``at``) go with the pruning and the retention sweep once past the pending
    bound; failures stay for their window."""
    clock = FakeClock()
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=clock,
                              prune_every=1000)
    with attempt_sessions.begin() as db:  # left by a process killed 40 s ago
        at = clock.now - timedelta(seconds=40)
        db.add(FailedAttempt(key_hash="0" * 64, at=at, pending=True,
                             expires_at=at + timedelta(seconds=PENDING_MAX_S)))
    window.reserve({"k": 9}, "x")  # the first write prunes: the leftover goes
    assert _stored(attempt_sessions) == 1
    window.reserve({"k": 9}, "x")  # left under way
    window.reserve({"k": 9}, "x").count_as_failure()
    window.add("k")
    clock.now += timedelta(seconds=PENDING_MAX_S - 1)
    assert window.prune() == 0 and window.count("k")[0] == 4
    clock.now += timedelta(seconds=1)
    assert window.count("k")[0] == 2  # the two failures
    with attempt_sessions.begin() as db:
        assert purge_expired_attempts(db, clock.now) == 2  # the two left under way
    assert _pending(attempt_sessions) == [False, False]


def test_count_as_failure_after_a_release_or_twice_does_nothing_more(
        timed: tuple[AttemptCounter, Advance]) -> None:
    counter, _ = timed
    released = counter.reserve({"k": 5}, "x")
    released.release()
    released.count_as_failure()
    assert counter.count("k") == (0, 0.0)
    failed = counter.reserve({"k": 5}, "x")
    failed.count_as_failure()
    failed.count_as_failure()
    assert counter.count("k") == (1, 60.0)


def test_a_storage_error_counting_a_failure_is_logged_not_raised(
        attempt_sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    window = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="t", clock=FakeClock())
    attempt = window.reserve({"k": 5}, "x")

    def broken(*args: object) -> None:
        raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr(window, "_keep", broken)
    with attempt:
        attempt.count_as_failure()  # does not raise; the block does not release it
    assert "could not count a failed attempt" in caplog.text
    assert window.count("k") == (1, PENDING_MAX_S) and _pending(attempt_sessions) == [True]
