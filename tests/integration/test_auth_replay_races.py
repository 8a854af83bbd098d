"""One TOTP step signs in once per account, also when logins race (staff and shoppers), and
two admins disabling each other at once leave one enabled admin; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from storefront.accounts import AccountService, AuthenticationFailed, LoginPolicy
from storefront.clock import utc_now
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.db.models import ShopperAccount, StaffAccount
from storefront.errors import Conflict
from storefront.security.audit import Audit
from storefront.security.errors import AuthenticationRequired
from storefront.security.staff import StaffService
from storefront.security.staff_admin import StaffAdmin

PASSWORD = "correct horse battery"
RACERS = 5
LIMITS = LoginPolicy(per_account=50, per_ip=50)  # every racer and replay gets to try


@pytest.fixture
def sessions(tmp_path: Path, database: str | None) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database or f"sqlite:///{tmp_path / 'auth.db'}")
    upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _race(attempt: Callable[[], Any], n: int = RACERS) -> tuple[list[Any], list[Exception]]:
    """Run ``attempt`` in ``n`` threads released together; (results, exceptions)."""
    start = threading.Barrier(n)
    results: list[Any] = []
    errors: list[Exception] = []

    def run() -> None:
        start.wait()
        try:
            results.append(attempt())
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def _staff(sessions: sessionmaker[Session]) -> tuple[StaffService, StaffAdmin]:
    staff = StaffService(sessions, os.urandom(32), utc_now, token_ttl_s=600, limits=LIMITS)
    return staff, StaffAdmin(sessions, staff, Audit(sessions, utc_now), utc_now)


def test_staff_code_signs_in_once_even_when_raced(sessions: sessionmaker[Session]) -> None:
    staff, _ = _staff(sessions)
    totp = pyotp.TOTP(staff.add(staff_id="mia", role="manager", password=PASSWORD)
                      .totp_secret or "")
    now = time.time()
    code = totp.at(now)
    won, lost = _race(lambda: staff.login(staff_id="mia", password=PASSWORD, totp=code))
    assert len(won) == 1 and len(lost) == RACERS - 1, lost
    assert all(isinstance(e, AuthenticationRequired) for e in lost)
    for replay in (code, totp.at(now - 30)):  # the same code again, the previous step's
        with pytest.raises(AuthenticationRequired):
            staff.login(staff_id="mia", password=PASSWORD, totp=replay, client_ip="10.1.0.1")
    assert staff.login(staff_id="mia", password=PASSWORD, totp=totp.at(now + 30),
                       client_ip="10.1.0.2").role == "manager"
    with sessions() as db:
        step = db.get(StaffAccount, "mia").totp_last_step  # type: ignore[union-attr]
    assert step == int(now // 30) + 1


def test_shopper_code_signs_in_once_even_when_raced(sessions: sessionmaker[Session]) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    secret = pyotp.random_base32()
    with sessions.begin() as db:
        db.add(ShopperAccount(shopper_id="shp_1", email="ann@example.org",
                              password_hash=hasher.hash(PASSWORD), totp_secret=secret,
                              totp_enabled=True, created_at=datetime.now(UTC)))
    # the row holds its secret in clear (as written before sealing): the racing logins
    # seal it on first use, exactly once
    accounts = AccountService(sessions=sessions, shoppers=None,  # type: ignore[arg-type]
                              clock=utc_now, keys=os.urandom(32), hasher=hasher,
                              policy=LIMITS)
    now = time.time()
    code = pyotp.TOTP(secret).at(now)

    def login(totp_code: str | None, ip: str = "10.0.0.1") -> Any:
        return accounts.login(email="ann@example.org", password=PASSWORD, client_ip=ip,
                              totp_code=totp_code)

    won, lost = _race(lambda: login(code))
    assert len(won) == 1 and len(lost) == RACERS - 1, lost
    assert {str(e) for e in lost} == {"wrong e-mail, password or TOTP code"}
    with pytest.raises(AuthenticationFailed):
        login(pyotp.TOTP(secret).at(now - 30), "10.1.0.1")
    assert login(pyotp.TOTP(secret).at(now + 30), "10.1.0.2").shopper_id == "shp_1"
    with sessions() as db:
        row = db.get(ShopperAccount, "shp_1")
        assert row is not None and row.totp_secret is None and row.totp_secret_sealed


def test_two_admins_disabling_each_other_leave_one(sessions: sessionmaker[Session]) -> None:
    staff, admin = _staff(sessions)
    for name in ("ada", "ben"):
        staff.add(staff_id=name, role="admin", password=PASSWORD)
    for _ in range(3):
        pairs = iter([("ada", "ben"), ("ben", "ada")])
        lock = threading.Lock()

        def disable_other(pairs: Iterator[tuple[str, str]] = pairs,
                          lock: threading.Lock = lock) -> Any:
            with lock:
                actor, target = next(pairs)
            return admin.disable(actor=f"staff:{actor}", staff_id=target)

        won, lost = _race(disable_other, 2)
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict), lost
        assert "last enabled admin" in str(lost[0])
        with sessions() as db:
            enabled = db.scalars(sa.select(StaffAccount.id).where(
                StaffAccount.role == "admin", StaffAccount.disabled_at.is_(None))).all()
        assert len(enabled) == 1
        admin.enable(actor="cli", staff_id=won[0].staff_id)
    audit = Audit(sessions, utc_now)
    changes = [e.details["change"] for e in audit.entries(limit=100)]
    assert changes == ["disabled", "enabled"] * 3
    assert audit.verify().ok
