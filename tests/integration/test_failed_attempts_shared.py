"""Failed-attempt limits are counted in the database (``failed_attempts``), on SQLite and
PostgreSQL: two service instances on one database refuse an attacker after the combined
limit, not twice it; the counts survive a restart; rows past their window are pruned;
failures recorded by many threads at once are all counted; keys are stored only hashed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from storefront.accounts import AuthenticationFailed, TooManyAttempts
from storefront.bootstrap import Container, bootstrap
from storefront.db.engine import make_engine
from storefront.db.models import FailedAttempt
from storefront.payments import SimulatedProcessor
from storefront.privacy.enrolment_codes import EnrolmentCodeRefused
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.security.attempts_sql import SqlFailureWindow, key_digest
from storefront.security.errors import AuthenticationRequired
from storefront.settings import Settings
from tests.clocks import FakeClock

PASSWORD = "correct horse battery"
ATTACKED = "ann@example.org"
Instance = tuple[Container, Privacy]


@pytest.fixture
def settings(tmp_path: Path, database: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "store", database_url=database)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start(settings: Settings, clock: FakeClock) -> Iterator[Callable[[], Instance]]:
    """Starts service instances on the one database (as separate worker processes or a
    restart would), closed at the end."""
    started: list[Container] = []

    def make() -> Instance:
        c = bootstrap(settings, clock=clock,
                      processor=SimulatedProcessor(seed=5, decline_rate=0.0))
        started.append(c)
        return c, build_privacy(c, clock=clock, hasher=PasswordHasher(
            time_cost=1, memory_cost=1024, parallelism=1))

    yield make
    for c in started:
        c.close()


def _wrong_login(p: Privacy, ip: str, email: str = ATTACKED) -> None:
    with pytest.raises(AuthenticationFailed):
        p.accounts.login(email=email, password="not the password", client_ip=ip)


def _rows(c: Container) -> list[tuple[str, object]]:
    with c.db() as db:
        return [(r.key_hash, r.at) for r in db.scalars(sa.select(FailedAttempt))]


def test_two_instances_refuse_after_the_combined_account_limit(
        start: Callable[[], Instance]) -> None:
    (_, one), (_, two) = start(), start()
    one.accounts.sign_up(email=ATTACKED, password=PASSWORD, display_name="Ann",
                         payment_token="tok_ann", client_ip="10.0.0.1")
    for n in range(5):  # 5 per account in all, alternating instances, a new address each
        _wrong_login(one if n % 2 else two, ip=f"10.9.0.{n}")
    for p in (one, two):
        with pytest.raises(TooManyAttempts) as refused:  # even the right password
            p.accounts.login(email=ATTACKED, password=PASSWORD, client_ip="10.9.1.1")
        assert refused.value.retry_after_s == 901  # FakeClock stands still: the whole window


def test_two_instances_refuse_after_the_combined_address_limit(
        start: Callable[[], Instance]) -> None:
    (_, one), (_, two) = start(), start()
    for n in range(20):  # 20 per address in all, a different (unknown) account each time
        _wrong_login(one if n % 2 else two, ip="10.7.7.7", email=f"x{n}@example.org")
    for p in (one, two):
        with pytest.raises(TooManyAttempts):
            p.accounts.login(email="new@example.org", password=PASSWORD, client_ip="10.7.7.7")
    _wrong_login(one, ip="10.7.7.8", email="new@example.org")  # another address still tries


def test_staff_and_enrolment_limits_are_shared_too(start: Callable[[], Instance],
                                                   clock: FakeClock) -> None:
    (c1, p1), (c2, p2) = start(), start()
    c1.security.staff.add(staff_id="kim", role="cashier", password="kim's long password")
    for n in range(5):
        with pytest.raises(AuthenticationRequired):
            (c1 if n % 2 else c2).security.staff.login(
                staff_id="kim", password="wrong password!", client_ip="10.2.0.9")
    with pytest.raises(TooManyAttempts):
        c1.security.staff.login(staff_id="kim", password="kim's long password",
                                client_ip="10.2.1.1")
    # the staff sign-ins' "ip:" key is not the shopper logins' (a namespace each)
    staff, shoppers = (SqlFailureWindow(c2.db, window_s=900.0, namespace=ns, clock=clock)
                       for ns in ("staff-login", "shopper-accounts"))
    assert staff.count("ip:10.2.0.9")[0] == 5
    assert shoppers.count("ip:10.2.0.9") == (0, 0.0)
    ann = p1.accounts.sign_up(email=ATTACKED, password=PASSWORD, display_name="Ann",
                              payment_token="tok_ann", client_ip="10.0.0.1")
    good = p1.enrolment_codes.issue(ann)
    for n in range(10):  # 10 wrong codes per staff member in all
        with pytest.raises(EnrolmentCodeRefused):
            (p1 if n % 2 else p2).enrolment_codes.check(
                "WRONGWRONG", shopper_id=ann, staff_id="lee", client=f"10.3.0.{n}")
    with pytest.raises(TooManyAttempts):
        p2.enrolment_codes.check(good.code, shopper_id=ann, staff_id="lee", client="10.3.1.1")
    assert p2.enrolment_codes.check(good.code, shopper_id=ann, staff_id="kim",
                                    client="10.3.1.1") == good.code  # "staff:kim" apart


def test_counts_survive_a_restart_and_end_with_the_window(
        start: Callable[[], Instance], clock: FakeClock) -> None:
    c, p = start()
    for n in range(5):
        _wrong_login(p, ip=f"10.8.0.{n}")
    c.close()
    clock.now += timedelta(seconds=100)
    _, again = start()  # a restarted service
    with pytest.raises(TooManyAttempts) as refused:
        again.accounts.login(email=ATTACKED, password=PASSWORD, client_ip="10.8.1.1")
    assert refused.value.retry_after_s == 801  # 800 s until the oldest failure leaves
    clock.now += timedelta(seconds=800)  # exactly a window after them: no longer counted
    _wrong_login(again, ip="10.8.1.2")


def test_rows_past_their_window_are_pruned(start: Callable[[], Instance],
                                           clock: FakeClock) -> None:
    c, p = start()
    for n in range(6):
        _wrong_login(p, ip="10.6.0.1", email=f"old{n}@example.org")
    assert len(_rows(c)) == 12  # one per account and one per address each time
    clock.now += timedelta(seconds=901)
    _, restarted = start()
    _wrong_login(restarted, ip="10.6.0.2")  # its first failure prunes
    rows = _rows(c)
    assert len(rows) == 2 and all(at == clock.now for _, at in rows)


def test_keys_are_stored_only_as_their_sha256(start: Callable[[], Instance]) -> None:
    c, p = start()
    _wrong_login(p, ip="192.0.2.55")
    hashes = {h for h, _ in _rows(c)}
    assert hashes == {key_digest("shopper-accounts", f"acct:{ATTACKED}"),
                      key_digest("shopper-accounts", "ip:192.0.2.55")}
    with c.engine.connect() as conn:
        dump = str(conn.execute(sa.text("SELECT * FROM failed_attempts")).all())
    assert ATTACKED not in dump and "192.0.2.55" not in dump


def test_failures_from_many_threads_and_two_engines_are_all_counted(
        migrated_sessions: sessionmaker[Session]) -> None:
    url = migrated_sessions.kw["bind"].url.render_as_string(hide_password=False)
    other = make_engine(url)  # a second process's engine: its own connection pool
    try:
        windows = [SqlFailureWindow(s, window_s=900.0, namespace="race", prune_every=3)
                   for s in (migrated_sessions, sessionmaker(other))]
        threads_n, each = 8, 15
        start = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def fail(window: SqlFailureWindow) -> None:
            start.wait()
            try:
                for _ in range(each):
                    window.add("acct:ann", "ip:10.0.0.1")
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=fail, args=(windows[k % 2],))
                   for k in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for window in windows:
            for count, wait in window.counts(["acct:ann", "ip:10.0.0.1"]).values():
                assert count == threads_n * each and 850.0 < wait <= 900.0
        with pytest.raises(TooManyAttempts):
            windows[1].refuse_when_over({"acct:ann": threads_n * each}, "too many")
        windows[0].refuse_when_over({"acct:ann": threads_n * each + 1}, "not yet")
    finally:
        other.dispose()


def test_edge_keys_on_the_database(migrated_sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    window = SqlFailureWindow(migrated_sessions, window_s=60.0, namespace="edge", clock=clock)
    odd = ["", "x" * 100_000, "ip:\ud800", "acct:a\x00b", "acct:ä@例え.jp", "ip:'; DROP--"]
    window.add(*odd)
    window.add("")
    assert window.counts(odd) == {key: (2 if key == "" else 1, 60.0) for key in odd}
    assert window.count("acct:a") == (0, 0.0)  # NUL does not cut the key short
    with pytest.raises(TooManyAttempts) as refused:
        window.refuse_when_over({"": 2, "x" * 100_000: 5}, "empty key over")
    assert refused.value.retry_after_s == 61
    other = SqlFailureWindow(migrated_sessions, window_s=60.0, namespace="edge2", clock=clock)
    assert other.count("") == (0, 0.0)  # namespaces count apart
    with migrated_sessions() as db:
        lengths = set(db.scalars(sa.select(sa.func.length(FailedAttempt.key_hash))))
    assert lengths == {64}
