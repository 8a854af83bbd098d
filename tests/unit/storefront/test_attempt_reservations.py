"""Reserving an attempt before the secret is checked (``reserve``), for both counters:
within the limit the attempt is counted at once; over it nothing stays counted and
TooManyAttempts says how long to wait; a release takes the attempt back; the ``with``
block keeps it only when the caller said it failed; and threads reserving at once (two
engines on one SQLite file for the database counter) never get more than the limit
through, with or without releases in between."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.engine import make_engine
from storefront.db.models import FailedAttempt
from storefront.security.attempts import (
    AttemptCounter,
    FailureWindow,
    Reservation,
    SqlFailureWindow,
    TooManyAttempts,
)
from tests.clocks import FakeClock


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'attempts.db'}")
    FailedAttempt.__table__.create(engine)  # type: ignore[attr-defined]
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(FailedAttempt)) or 0)


@pytest.fixture(params=["sql", "memory"])
def counter(request: pytest.FixtureRequest,
            sessions: sessionmaker[Session]) -> AttemptCounter:
    """Each counter, a 60-second window (the database one on a clock standing still)."""
    if request.param == "sql":
        return SqlFailureWindow(sessions, window_s=60.0, namespace="t", clock=FakeClock())
    return FailureWindow(window_s=60.0)


def test_within_the_limit_the_attempt_is_counted_at_once(counter: AttemptCounter) -> None:
    first = counter.reserve({"acct:ann": 2, "ip:x": 5}, "too many")
    assert counter.count("acct:ann")[0] == 1 and counter.count("ip:x")[0] == 1
    counter.reserve({"acct:ann": 2, "ip:x": 5}, "too many")
    assert counter.count("acct:ann")[0] == 2
    assert isinstance(first, Reservation) and not first.failed


def test_over_the_limit_raises_and_leaves_nothing_counted(counter: AttemptCounter) -> None:
    for _ in range(3):
        counter.reserve({"acct:ann": 3}, "x")
    with pytest.raises(TooManyAttempts) as refused:
        counter.reserve({"ip:free": 10, "acct:ann": 3}, "too many failed logins")
    assert str(refused.value) == "too many failed logins"
    assert 59 <= refused.value.retry_after_s <= 61
    assert counter.count("acct:ann")[0] == 3  # the refused attempt is not a failure
    assert counter.count("ip:free") == (0, 0.0)  # nor for the key under its limit


def test_refused_reservations_write_no_row(sessions: sessionmaker[Session]) -> None:
    window = SqlFailureWindow(sessions, window_s=60.0, namespace="t", clock=FakeClock())
    window.add("k", "k")
    for _ in range(5):
        with pytest.raises(TooManyAttempts):
            window.reserve({"k": 2, "other": 9}, "x")
    assert _stored(sessions) == 2


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


def test_retry_after_runs_to_the_oldest_counted_row(sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    window = SqlFailureWindow(sessions, window_s=60.0, namespace="t", clock=clock)
    window.reserve({"k": 2}, "x")
    clock.now += timedelta(seconds=10.5)
    window.reserve({"k": 2}, "x")
    with pytest.raises(TooManyAttempts) as refused:
        window.reserve({"k": 2}, "x")
    assert refused.value.retry_after_s == 50  # int(49.5) + 1
    clock.now += timedelta(seconds=49.5)  # the first one has left the window
    window.reserve({"k": 2}, "x")


def test_a_reservation_past_the_first_read_is_refused_by_rows_committed_meanwhile(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The race itself: another process commits two attempts between this reservation's
    first read (which saw room) and its own write; its count with its row sees them."""
    clock = FakeClock()
    window = SqlFailureWindow(sessions, window_s=60.0, namespace="t", clock=clock)
    other = SqlFailureWindow(sessions, window_s=60.0, namespace="t", clock=clock)
    window.add("k")
    reads: list[int] = []
    real_counts = window.counts

    def counts_then_others_commit(keys: list[str]) -> dict[str, tuple[int, float]]:
        seen = real_counts(keys)
        reads.append(seen["k"][0])
        if len(reads) == 1:
            other.add("k")
            other.add("k")
        return seen

    monkeypatch.setattr(window, "counts", counts_then_others_commit)
    with pytest.raises(TooManyAttempts):
        window.reserve({"k": 3}, "x")
    assert reads == [1]  # room at first; then 3 others and its own row: over
    assert other.count("k")[0] == 3 and _stored(sessions) == 3  # its row rolled back


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


def _counters(request: pytest.FixtureRequest, sessions: sessionmaker[Session],
              tmp_path: Path) -> Callable[[int], AttemptCounter]:
    """The in-memory counter, or a database counter on each of two engines (two
    processes' connection pools) on one SQLite file, taken in turn."""
    if request.param == "memory":
        memory = FailureWindow(window_s=60.0)
        return lambda n: memory
    other = make_engine(f"sqlite:///{tmp_path / 'attempts.db'}")
    request.addfinalizer(other.dispose)
    windows = [SqlFailureWindow(s, window_s=60.0, namespace="race")
               for s in (sessions, sessionmaker(other))]
    return lambda n: windows[n % 2]


@pytest.fixture(params=["sql", "memory"])
def counters(request: pytest.FixtureRequest, sessions: sessionmaker[Session],
             tmp_path: Path) -> Callable[[int], AttemptCounter]:
    return _counters(request, sessions, tmp_path)


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
