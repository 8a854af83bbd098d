"""The sliding window of failed attempts: the database-backed counter
(:class:`storefront.security.attempts_sql.SqlFailureWindow`, on a SQLite file, a settable
clock) and the in-memory one give the same answers; rows past their window are pruned in
bounded batches; keys are hashed with their namespace."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.accounts import FailureWindow as AccountsFailureWindow
from storefront.accounts import TooManyAttempts as AccountsTooManyAttempts
from storefront.db.models import FailedAttempt
from storefront.security.attempts import FailureWindow, TooManyAttempts
from storefront.security.attempts_sql import SqlFailureWindow, key_digest
from tests.clocks import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _window(sessions: sessionmaker[Session], clock: FakeClock, **kw: int) -> SqlFailureWindow:
    return SqlFailureWindow(sessions, window_s=60.0, namespace="test", clock=clock, **kw)


def _stored(attempt_sessions: sessionmaker[Session]) -> int:
    with attempt_sessions() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(FailedAttempt)) or 0)


def test_counts_per_key_and_forgets_failures_a_window_old(
        attempt_sessions: sessionmaker[Session], clock: FakeClock) -> None:
    window = _window(attempt_sessions, clock)
    window.add("acct:ann")
    clock.now += timedelta(seconds=20)
    window.add("acct:ann", "ip:10.0.0.1")
    window.add("acct:ann")
    assert window.count("acct:ann") == (3, 40.0)  # the oldest leaves in 40 s
    assert window.count("ip:10.0.0.1") == (1, 60.0)
    assert window.count("acct:bob") == (0, 0.0)
    clock.now += timedelta(seconds=39, microseconds=999_999)
    assert window.count("acct:ann")[0] == 3
    clock.now += timedelta(microseconds=1)  # exactly a window after the first: gone
    assert window.count("acct:ann") == (2, 20.0)
    clock.now += timedelta(seconds=20)
    assert window.counts(["acct:ann", "ip:10.0.0.1"]) == {"acct:ann": (0, 0.0),
                                                         "ip:10.0.0.1": (0, 0.0)}


def test_refuses_at_the_limit_with_the_seconds_until_the_oldest_leaves(
        attempt_sessions: sessionmaker[Session], clock: FakeClock) -> None:
    window = _window(attempt_sessions, clock)
    for _ in range(3):
        window.add("acct:ann")
    window.refuse_when_over({"acct:ann": 4, "ip:x": 1}, "not yet")
    clock.now += timedelta(seconds=10.5)
    with pytest.raises(TooManyAttempts) as refused:
        window.refuse_when_over({"ip:x": 1, "acct:ann": 3}, "too many failed logins")
    assert str(refused.value) == "too many failed logins"
    assert refused.value.retry_after_s == 50  # int(49.5) + 1, as the in-memory window
    assert refused.value.code == "rate_limited"
    clock.now += timedelta(seconds=49.5)
    window.refuse_when_over({"acct:ann": 1}, "over: the window has passed")
    window.refuse_when_over({}, "no keys, nothing to refuse")


def test_the_last_second_still_answers_one(attempt_sessions: sessionmaker[Session],
                                          clock: FakeClock) -> None:
    window = _window(attempt_sessions, clock)
    window.add("k")
    clock.now += timedelta(seconds=59.9)
    with pytest.raises(TooManyAttempts) as refused:
        window.refuse_when_over({"k": 1}, "x")
    assert refused.value.retry_after_s == 1


def test_in_memory_window_gives_the_same_answers() -> None:
    window = FailureWindow(window_s=60.0)
    window.add("acct:ann", "ip:10.0.0.1")
    window.add("acct:ann")
    assert window.count("acct:ann")[0] == 2 and window.count("ip:10.0.0.1")[0] == 1
    with pytest.raises(TooManyAttempts) as refused:
        window.refuse_when_over({"acct:ann": 2}, "x")
    assert refused.value.retry_after_s == 60  # int(59.99...) + 1
    window.add()  # no keys: nothing recorded
    assert window.count("") == (0, 0.0)
    assert AccountsFailureWindow is FailureWindow  # the accounts module's names still work
    assert AccountsTooManyAttempts is TooManyAttempts


def test_a_clock_in_another_offset_counts_the_same(attempt_sessions: sessionmaker[Session]) -> None:
    utc = FakeClock()
    local = FakeClock(utc.now.astimezone(timezone(timedelta(hours=3))))
    _window(attempt_sessions, local).add("k")  # written at 13:00+03:00, the same instant
    assert _window(attempt_sessions, utc).count("k") == (1, 60.0)
    utc.now += timedelta(seconds=60)
    assert _window(attempt_sessions, utc).count("k") == (0, 0.0)
    with attempt_sessions() as db:
        assert db.scalar(sa.select(FailedAttempt.at)) == datetime(2026, 5, 4, 10, 0,
                                                                  tzinfo=UTC)


def test_pruning_is_bounded_and_only_takes_rows_past_their_window(
        attempt_sessions: sessionmaker[Session], clock: FakeClock) -> None:
    window = _window(attempt_sessions, clock, prune_every=4, prune_batch=3)
    for n in range(10):
        window.add(f"old:{n}")  # adds 1, 5, 9 prune (nothing stale yet)
    assert _stored(attempt_sessions) == 10
    clock.now += timedelta(seconds=60)  # every row is now a window old
    window.add("new:1")  # add 11: no prune
    window.add("new:2")  # add 12: no prune
    assert _stored(attempt_sessions) == 12
    window.add("new:3")  # add 13 prunes at most 3
    assert _stored(attempt_sessions) == 10
    assert window.prune(limit=5) == 5
    assert window.prune() == 2  # at most prune_batch (3): the last 2 stale rows
    assert window.prune() == 0
    assert window.counts(["new:1", "new:2", "new:3"]) == {
        f"new:{n}": (1, 60.0) for n in (1, 2, 3)}


def test_pruning_takes_other_counters_rows_by_their_own_window(
        attempt_sessions: sessionmaker[Session], clock: FakeClock) -> None:
    long = SqlFailureWindow(attempt_sessions, window_s=900.0, namespace="long", clock=clock)
    short = SqlFailureWindow(attempt_sessions, window_s=1.0, namespace="short", clock=clock)
    long.add("k")
    short.add("k")
    clock.now += timedelta(seconds=2)
    assert short.prune() == 1  # its own stale row, not the other counter's live one
    assert long.count("k") == (1, 898.0)


def test_namespaces_count_apart_and_keys_are_hashed(
        attempt_sessions: sessionmaker[Session], clock: FakeClock) -> None:
    shoppers = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="shoppers", clock=clock)
    staff = SqlFailureWindow(attempt_sessions, window_s=60.0, namespace="staff", clock=clock)
    shoppers.add("ip:10.0.0.1")
    assert staff.count("ip:10.0.0.1") == (0, 0.0)
    with attempt_sessions() as db:
        stored = db.scalar(sa.select(FailedAttempt.key_hash))
    assert stored == hashlib.sha256(b"shoppers\x00ip:10.0.0.1").hexdigest()
    assert key_digest("a", "b:c") != key_digest("a:b", "c")  # the NUL separates them
    assert len(key_digest("n", "x" * 1_000_000)) == 64
    assert key_digest("n", "\udcff") != key_digest("n", "")  # lone surrogate: no error


@pytest.mark.parametrize("kwargs", [{"namespace": ""}, {"namespace": "a\x00b"},
                                    {"window_s": -1.0}, {"prune_every": 0},
                                    {"prune_batch": 0}])
def test_bad_settings_are_refused(attempt_sessions: sessionmaker[Session],
                                  kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"window_s": 60.0, "namespace": "n", **kwargs}
    with pytest.raises(ValueError):
        SqlFailureWindow(attempt_sessions, **settings)  # type: ignore[arg-type]


def test_adding_no_keys_writes_nothing(attempt_sessions: sessionmaker[Session],
                                       clock: FakeClock) -> None:
    window = _window(attempt_sessions, clock)
    window.add()
    assert _stored(attempt_sessions) == 0
    assert window.counts([]) == {}
