"""Failed-attempt limits hold against requests sent in parallel, on SQLite and
PostgreSQL: with two service instances on one database (two workers' connection pools)
and 40 threads guessing at once, no more passwords or codes are checked than the limit
(counted at the check itself), every other request is refused (429), and the right
secret is refused once the limit is reached (Retry-After: the window). Successes do not
use up the limit; right secrets refused only because others are still being checked are
told to retry in 1 second, and succeed then; the attempts of a process killed during its
checks stop counting after ``PENDING_MAX_S``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from storefront import accounts as accounts_module
from storefront.accounts import ATTEMPTS_NAMESPACE, AuthenticationFailed, TooManyAttempts
from storefront.bootstrap import Container, bootstrap
from storefront.db.engine import make_engine
from storefront.db.models import FailedAttempt
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.privacy import enrolment_codes as enrolment_module
from storefront.privacy.enrolment_codes import EnrolmentCodeRefused
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.security import staff as staff_module
from storefront.security.attempts import PENDING_MAX_S
from storefront.security.attempts_sql import SqlFailureWindow
from storefront.security.errors import AuthenticationRequired
from storefront.settings import Settings
from tests.clocks import FakeClock

PASSWORD = "correct horse battery"
ANN = "ann@example.org"
THREADS = 40
Instance = tuple[Container, Privacy]


@pytest.fixture
def settings(tmp_path: Path, database: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "store", database_url=database)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pair(settings: Settings, clock: FakeClock) -> Iterator[tuple[Instance, Instance]]:
    """Two service instances on one database (as two worker processes), closed after."""
    started: list[Container] = []

    def make() -> Instance:
        c = bootstrap(settings, clock=clock,
                      processor=SimulatedProcessor(seed=5, decline_rate=0.0))
        started.append(c)
        return c, build_privacy(c, clock=clock, hasher=PasswordHasher(
            time_cost=1, memory_cost=1024, parallelism=1))

    yield make(), make()
    for c in started:
        c.close()


class Checks:
    """Counts the calls of a module's or class's check function (thread-safe)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.n = 0
        self._lock = threading.Lock()
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def _burst(guess: Callable[[int], object], failed: type[Exception]) -> dict[str, int]:
    """``THREADS`` threads calling ``guess(n)`` at once; how many answers of each kind
    ("wrong": ``failed``, the wrong-secret answer; "429": TooManyAttempts; "ok")."""
    start = threading.Barrier(THREADS)
    answers: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        start.wait()
        try:
            guess(n)
            kind = "ok"
        except failed:
            kind = "wrong"
        except TooManyAttempts:
            kind = "429"
        except BaseException as exc:  # noqa: BLE001 - reported in the assertion
            kind = repr(exc)
        with lock:
            answers.append(kind)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {kind: answers.count(kind) for kind in set(answers)}


def test_parallel_wrong_logins_check_no_more_passwords_than_the_account_limit(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch) -> None:
    (_, one), (_, two) = pair
    one.accounts.sign_up(email=ANN, password=PASSWORD, display_name="Ann",
                         payment_token="tok_ann", client_ip="10.0.0.1")
    checks = Checks(monkeypatch, accounts_module.AccountService, "_verify")
    answers = _burst(lambda n: (one if n % 2 else two).accounts.login(
        email=ANN, password=f"wrong password {n:04d}", client_ip=f"10.9.{n}.1"),
        AuthenticationFailed)
    assert answers == {"wrong": 5, "429": THREADS - 5}
    assert checks.n == 5  # exactly the limit reached the password check
    for p in (one, two):  # the right password too, on either instance
        with pytest.raises(TooManyAttempts) as refused:
            p.accounts.login(email=ANN, password=PASSWORD, client_ip="10.9.250.1")
        assert refused.value.retry_after_s == 901  # the failures leave in 900 s (+1)
    assert checks.n == 5


def test_parallel_wrong_logins_from_one_address_stop_at_its_limit(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch) -> None:
    (_, one), (_, two) = pair
    checks = Checks(monkeypatch, accounts_module.AccountService, "_verify")
    answers = _burst(lambda n: (one if n % 2 else two).accounts.login(
        email=f"x{n}@example.org", password="not the password", client_ip="10.7.7.7"),
        AuthenticationFailed)
    assert answers == {"wrong": 20, "429": THREADS - 20} and checks.n == 20


def test_parallel_wrong_staff_sign_ins_check_no_more_than_the_limit(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch) -> None:
    (c1, _), (c2, _) = pair
    c1.security.staff.add(staff_id="kim", role="cashier", password="kim's long password")
    checks = Checks(monkeypatch, staff_module, "_verify_password")
    answers = _burst(lambda n: (c1 if n % 2 else c2).security.staff.login(
        staff_id="kim", password=f"wrong password {n:04d}", client_ip=f"10.2.{n}.9"),
        AuthenticationRequired)
    assert answers == {"wrong": 5, "429": THREADS - 5} and checks.n == 5
    with pytest.raises(TooManyAttempts):
        c2.security.staff.login(staff_id="kim", password="kim's long password",
                                client_ip="10.2.250.1")
    assert checks.n == 5


def test_parallel_wrong_enrolment_codes_look_up_no_more_than_the_limit(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch) -> None:
    (_, p1), (_, p2) = pair
    ann = p1.accounts.sign_up(email=ANN, password=PASSWORD, display_name="Ann",
                              payment_token="tok_ann", client_ip="10.0.0.1")
    good = p1.enrolment_codes.issue(ann)
    checks = Checks(monkeypatch, enrolment_module, "is_usable")
    answers = _burst(lambda n: (p1 if n % 2 else p2).enrolment_codes.check(
        f"WRONG{n:05d}", shopper_id=ann, staff_id="lee", client=f"10.3.{n}.1"),
        EnrolmentCodeRefused)
    assert answers == {"wrong": 10, "429": THREADS - 10} and checks.n == 10
    with pytest.raises(TooManyAttempts):
        p2.enrolment_codes.check(good.code, shopper_id=ann, staff_id="lee", client="10.3.250.1")
    assert checks.n == 10


def test_successes_and_refusals_do_not_use_up_the_limit(
        pair: tuple[Instance, Instance], clock: FakeClock) -> None:
    (c1, one), (c2, two) = pair
    one.accounts.sign_up(email=ANN, password=PASSWORD, display_name="Ann",
                         payment_token="tok_ann", client_ip="10.0.0.1")
    for n in range(4):
        with pytest.raises(AuthenticationFailed):
            (one if n % 2 else two).accounts.login(email=ANN, password="wrong password",
                                                   client_ip="10.5.0.1")
    for n in range(8):  # 8 right passwords: none counted
        (one if n % 2 else two).accounts.login(email=ANN, password=PASSWORD,
                                               client_ip="10.5.0.1")
    with pytest.raises(AuthenticationFailed):  # the fifth failure is still checked
        two.accounts.login(email=ANN, password="wrong password", client_ip="10.5.0.1")
    for _ in range(3):  # refusals are not counted either: the window stays at 5
        with pytest.raises(TooManyAttempts):
            one.accounts.login(email=ANN, password=PASSWORD, client_ip="10.5.0.1")
    window = SqlFailureWindow(c2.db, window_s=900.0, namespace="shopper-accounts",
                              clock=clock)
    assert window.count(f"acct:{ANN}")[0] == 5 and window.count("ip:10.5.0.1")[0] == 5


def test_an_address_taken_sign_up_counts_and_a_new_one_does_not(
        pair: tuple[Instance, Instance], clock: FakeClock) -> None:
    (c1, one), (_, two) = pair
    for n in range(3):  # successful sign-ups are not counted
        one.accounts.sign_up(email=f"new{n}@example.org", password=PASSWORD,
                             display_name="New", payment_token=f"tok_{n}", client_ip="10.4.0.1")
    window = SqlFailureWindow(c1.db, window_s=900.0, namespace="shopper-accounts",
                              clock=clock)
    assert window.count("signup-ip:10.4.0.1") == (0, 0.0)
    answers = _burst(lambda n: (one if n % 2 else two).accounts.sign_up(
        email="new0@example.org", password=PASSWORD, display_name="Again",
        payment_token=f"tok_again_{n}", client_ip="10.4.0.1"),
        Conflict)
    assert answers == {"wrong": 5, "429": THREADS - 5}  # 5 "address taken" answers
    assert window.count("signup-ip:10.4.0.1")[0] == 5


def test_reservations_from_two_engines_keep_no_more_than_the_limit(
        migrated_sessions: sessionmaker[Session]) -> None:
    url = migrated_sessions.kw["bind"].url.render_as_string(hide_password=False)
    other = make_engine(url)  # a second process's engine: its own connection pool
    try:
        windows = [SqlFailureWindow(s, window_s=900.0, namespace="race", prune_every=3)
                   for s in (migrated_sessions, sessionmaker(other))]
        kept: list[int] = []
        lock = threading.Lock()

        def reserve(n: int) -> None:
            attempt = windows[n % 2].reserve({"acct:ann": 5, f"ip:{n % 3}": 30}, "x")
            if n % 4 == 0:
                attempt.release()  # a success: taken back
            else:
                with lock:
                    kept.append(n)

        answers = _burst(reserve, LookupError)
        assert answers.get("ok", 0) + answers.get("429", 0) == THREADS
        # attempts under way hold their place until released, so fewer than 5 may be
        # kept; never more, and the rows left are exactly the kept ones
        assert len(kept) <= 5 and answers["ok"] >= 5
        for window in windows:
            assert window.count("acct:ann")[0] == len(kept)
            assert sum(window.count(f"ip:{k}")[0] for k in range(3)) == len(kept)
    finally:
        other.dispose()


def _held_burst(pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch,
                n_threads: int, limit: int,
                login: Callable[[Privacy, int], object]) -> tuple[int, list[int]]:
    """``n_threads`` right logins at once on the two instances, the password checks held
    until every login over ``limit`` has been refused (so the refusals are certainly due
    to logins still under way); (successes, the refusals' Retry-After)."""
    start = threading.Barrier(n_threads)
    refusals: list[int] = []
    all_refused = threading.Event()
    lock = threading.Lock()
    ok: list[int] = []
    errors: list[BaseException] = []
    real = accounts_module.AccountService._verify

    def held(self: Any, *args: Any) -> Any:
        assert all_refused.wait(timeout=30)
        return real(self, *args)

    monkeypatch.setattr(accounts_module.AccountService, "_verify", held)
    (_, one), (_, two) = pair

    def run(n: int) -> None:
        start.wait()
        try:
            login(one if n % 2 else two, n)
        except TooManyAttempts as exc:
            with lock:
                refusals.append(exc.retry_after_s)
                if len(refusals) == n_threads - limit:
                    all_refused.set()
            return
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
            all_refused.set()
            return
        with lock:
            ok.append(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return len(ok), refusals


def test_parallel_right_logins_to_one_account_are_told_to_retry_in_a_second(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch,
        clock: FakeClock) -> None:
    """F1: 10 right logins to one account at once (limit 5): 5 are checked, the other 5
    are refused only because those are under way: Retry-After 1, not the window; a
    second later (on the service's clock standing still: at once) they succeed."""
    (c1, one), (_, two) = pair
    one.accounts.sign_up(email=ANN, password=PASSWORD, display_name="Ann",
                         payment_token="tok_ann", client_ip="10.0.0.1")
    ok, refusals = _held_burst(pair, monkeypatch, 10, 5, lambda p, n: p.accounts.login(
        email=ANN, password=PASSWORD, client_ip=f"10.6.{n}.1"))
    assert ok == 5 and refusals == [1] * 5
    for n in range(5):  # the retries: all succeed
        (one if n % 2 else two).accounts.login(email=ANN, password=PASSWORD,
                                               client_ip=f"10.6.{n}.1")
    window = SqlFailureWindow(c1.db, window_s=900.0, namespace=ATTEMPTS_NAMESPACE,
                              clock=clock)
    assert window.count(f"acct:{ANN}") == (0, 0.0)  # successes leave nothing


def test_a_kiosk_logging_in_30_shoppers_at_once_is_told_to_retry_in_a_second(
        pair: tuple[Instance, Instance], monkeypatch: pytest.MonkeyPatch) -> None:
    """F1: 30 shoppers logging in at once from one address (limit 20 per address): the
    10 refused while 20 are checked get Retry-After 1 and succeed when they retry."""
    (_, one), (_, two) = pair
    emails = [f"s{n:02d}@example.org" for n in range(30)]
    for n, email in enumerate(emails):
        one.accounts.sign_up(email=email, password=PASSWORD, display_name="S",
                             payment_token=f"tok_{n}", client_ip="10.0.0.1")
    ok, refusals = _held_burst(pair, monkeypatch, 30, 20, lambda p, n: p.accounts.login(
        email=emails[n], password=PASSWORD, client_ip="10.8.8.8"))
    assert ok == 20 and refusals == [1] * 10
    for n, email in enumerate(emails):  # every one of them again at once after: fine
        (one if n % 2 else two).accounts.login(email=email, password=PASSWORD,
                                               client_ip="10.8.8.8")


def test_logins_left_under_way_by_a_killed_process_stop_counting(
        pair: tuple[Instance, Instance], clock: FakeClock) -> None:
    """F4: a worker killed (kill -9) during 5 password checks of Ann's account leaves 5
    rows under way: they hold the account back for ``PENDING_MAX_S`` at most (Retry-After
    1), then neither count nor stay (the pruning and the retention sweep delete them)."""
    (c1, one), (_, two) = pair
    one.accounts.sign_up(email=ANN, password=PASSWORD, display_name="Ann",
                         payment_token="tok_ann", client_ip="10.0.0.1")
    killed = SqlFailureWindow(c1.db, window_s=900.0, namespace=ATTEMPTS_NAMESPACE,
                              clock=clock)
    for n in range(5):  # reserved, never failed nor released: the process died
        killed.reserve({f"acct:{ANN}": 5, f"ip:10.1.{n}.1": 20}, "x")
    with pytest.raises(TooManyAttempts) as refused:
        two.accounts.login(email=ANN, password=PASSWORD, client_ip="10.1.9.1")
    assert refused.value.retry_after_s == 1
    clock.now += timedelta(seconds=PENDING_MAX_S)
    two.accounts.login(email=ANN, password=PASSWORD, client_ip="10.1.9.1")
    for _ in range(5):  # the limit is whole again: 5 failures before a refusal
        with pytest.raises(AuthenticationFailed):
            one.accounts.login(email=ANN, password="wrong password", client_ip="10.1.9.1")
    with pytest.raises(TooManyAttempts) as refused:
        two.accounts.login(email=ANN, password=PASSWORD, client_ip="10.1.9.1")
    assert refused.value.retry_after_s == 901
    killed.prune()
    one.retention.sweep()
    with c1.db() as db:  # the leftovers went (pruned by the logins' own writes already)
        assert db.execute(sa.select(FailedAttempt.pending, sa.func.count())
                          .group_by(FailedAttempt.pending)).all() == [(False, 10)]
    assert killed.count(f"acct:{ANN}") == (5, 900.0)  # the failures stay
