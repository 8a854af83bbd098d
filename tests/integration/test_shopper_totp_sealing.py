"""Shopper TOTP secrets are sealed at rest under the store's KEK, like staff ones: sealed
on enrolment, a clear secret from before sealed at start-up (or on first use), re-sealed
by ``storefront keys rotate``, an altered sealed value refused as a failed login (401),
never exported; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from identity.errors import KeyFileError
from identity.keyring import FixedKeyProvider
from identity.protection import load_or_create_key_file
from storefront.accounts import AccountService, AuthenticationFailed
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.cli_keys import promote_new_kek, rotate
from storefront.clock import utc_now
from storefront.db.models import ShopperAccount, StaffAccount
from storefront.errors import KeyUnavailable
from storefront.payments import SimulatedProcessor
from storefront.privacy.export import collect
from storefront.privacy.wiring import Privacy, build_privacy, export_keys
from storefront.security.sealing import SealedSecretUnreadable
from storefront.settings import Settings
from storefront.shopper_totp import seal_clear_totp_secrets, shopper_totp_sealer
from storefront.subject_keys import KekFiles

PASSWORD = "correct horse battery"
EMAIL = "ann@example.org"


def _start(settings: Settings) -> Container:
    return bootstrap(settings, processor=SimulatedProcessor(seed=3, decline_rate=0.0))


def _privacy(c: Container) -> Privacy:
    return build_privacy(c, hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                  parallelism=1))


@pytest.fixture
def settings(tmp_path: Path, database: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "store", database_url=database)


@pytest.fixture
def store(settings: Settings) -> Iterator[Container]:
    c = _start(settings)
    yield c
    c.close()


def _raw_row(c: Container, shopper_id: str) -> tuple[str | None, bytes | None]:
    """(totp_secret, totp_secret_sealed) as stored, read past the ORM."""
    with c.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT totp_secret, totp_secret_sealed FROM "
                                   "shopper_accounts WHERE shopper_id = :s"),
                           {"s": shopper_id}).one()
    return row[0], None if row[1] is None else bytes(row[1])


def _kek(c: Container) -> bytes:
    """The store's current KEK (32 bytes)."""
    return load_or_create_key_file(KekFiles(c.settings.resolved_key_file()).current,
                                   create=False)[0]


def _with_totp(p: Privacy) -> tuple[str, pyotp.TOTP]:
    """ann signed up and TOTP turned on: (shopper id, her authenticator)."""
    sid = p.accounts.sign_up(email=EMAIL, password=PASSWORD, display_name="Ann",
                             payment_token="tok_ann", client_ip="10.0.0.1")
    totp = pyotp.parse_uri(p.accounts.totp_enrol(sid))
    assert isinstance(totp, pyotp.TOTP)
    p.accounts.totp_verify(sid, totp.now())
    return sid, totp


def _login(p: Privacy, code: str | None, ip: str = "10.0.0.2") -> str:
    return p.accounts.login(email=EMAIL, password=PASSWORD, client_ip=ip,
                            totp_code=code).shopper_id


def _later(totp: pyotp.TOTP, steps: int) -> str:
    """The code ``steps`` 30-second steps from now (each step signs in once)."""
    return totp.at(time.time() + 30 * steps)


def _forget_steps(c: Container) -> None:
    """Let the current codes sign in again (the replay guard is not under test here)."""
    with c.engine.begin() as conn:
        conn.execute(sa.update(ShopperAccount).values(totp_last_step=None))


def test_enrolment_stores_only_the_sealed_secret(store: Container) -> None:
    p = _privacy(store)
    sid, totp = _with_totp(p)
    clear, sealed = _raw_row(store, sid)
    assert clear is None and sealed is not None
    assert totp.secret.encode() not in sealed
    assert base64.b32decode(totp.secret) not in sealed
    assert len(sealed) == 12 + len(totp.secret) + 16  # nonce, ciphertext, GCM tag
    # bound to the shopper: the same bytes do not open for another shopper id
    sealer = shopper_totp_sealer(_kek(store))
    assert sealer.open(sid, sealed) == totp.secret
    with pytest.raises(SealedSecretUnreadable):
        sealer.open("shp_other", sealed)
    assert _login(p, _later(totp, 1)) == sid
    with pytest.raises(AuthenticationFailed, match="wrong e-mail, password or TOTP code"):
        _login(p, None, "10.0.0.3")


def test_a_clear_secret_is_sealed_at_start_up_once(settings: Settings,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    c = _start(settings)
    secret = pyotp.random_base32()
    try:
        p = _privacy(c)
        sid = p.accounts.sign_up(email=EMAIL, password=PASSWORD, display_name="Ann",
                                 payment_token="tok_ann", client_ip="10.0.0.1")
        with c.engine.begin() as conn:  # as a service before sealing existed wrote it
            conn.execute(sa.update(ShopperAccount).where(ShopperAccount.shopper_id == sid)
                         .values(totp_secret=secret, totp_enabled=True))
        assert _raw_row(c, sid) == (secret, None)
    finally:
        c.close()
    with caplog.at_level(logging.INFO, logger="storefront.shopper_totp"):
        c = _start(settings)
    try:
        clear, sealed = _raw_row(c, sid)
        assert clear is None and sealed is not None and secret.encode() not in sealed
        assert "sealed 1 shopper TOTP secret(s)" in caplog.text
        assert secret not in caplog.text
        assert seal_clear_totp_secrets(c.db, export_keys(c).provider) == 0  # idempotent
        assert _raw_row(c, sid)[1] == sealed
        assert _login(_privacy(c), pyotp.TOTP(secret).now()) == sid
    finally:
        c.close()


def test_a_clear_secret_is_sealed_on_first_login(store: Container) -> None:
    """A row still in clear (a process started before the sweep ran) signs in and is
    sealed by that login."""
    p = _privacy(store)
    sid = p.accounts.sign_up(email=EMAIL, password=PASSWORD, display_name="Ann",
                             payment_token="tok_ann", client_ip="10.0.0.1")
    secret = pyotp.random_base32()
    with store.engine.begin() as conn:
        conn.execute(sa.update(ShopperAccount).where(ShopperAccount.shopper_id == sid)
                     .values(totp_secret=secret, totp_enabled=True))
    assert _login(p, pyotp.TOTP(secret).now()) == sid
    clear, sealed = _raw_row(store, sid)
    assert clear is None and sealed is not None
    assert _login(p, _later(pyotp.TOTP(secret), 1)) == sid  # now read from the sealed value


def test_rotation_reseals_shopper_secrets(store: Container) -> None:
    p = _privacy(store)
    sid, totp = _with_totp(p)
    files = KekFiles(store.settings.resolved_key_file())
    old_kek = _kek(store)
    before = _raw_row(store, sid)[1]
    promote_new_kek(files)
    report = rotate(store.db, files, export_keys(store))
    assert report.shopper_secrets == 1 and not files.previous.exists()
    after = _raw_row(store, sid)[1]
    assert after is not None and after != before
    with pytest.raises(SealedSecretUnreadable):  # the retired KEK no longer opens it
        shopper_totp_sealer(old_kek).open(sid, after)
    assert _login(p, _later(totp, 1)) == sid  # the running service follows the rotation
    promote_new_kek(files)
    assert rotate(store.db, files, export_keys(store)).shopper_secrets == 1
    _forget_steps(store)
    assert _login(_privacy(store), totp.now()) == sid  # a newly built one too


def test_an_altered_value_does_not_block_a_rotation(store: Container) -> None:
    p = _privacy(store)
    sid, _totp = _with_totp(p)
    sealed = _raw_row(store, sid)[1]
    assert sealed is not None
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with store.engine.begin() as conn:
        conn.execute(sa.update(ShopperAccount).values(totp_secret_sealed=altered))
    files = KekFiles(store.settings.resolved_key_file())
    promote_new_kek(files)
    report = rotate(store.db, files, export_keys(store))
    assert report.shopper_secrets == 0 and not files.previous.exists()
    assert _raw_row(store, sid) == (None, altered)  # left as it was, logged


def test_an_altered_sealed_secret_is_a_failed_login_not_a_server_error(
        store: Container) -> None:
    app = create_app(store)
    app.state.privacy = p = _privacy(store)
    sid, totp = _with_totp(p)
    staff = store.security.staff.add(staff_id="mia", role="manager", password=PASSWORD)
    assert staff.totp_secret
    sealed = _raw_row(store, sid)[1]
    assert sealed is not None
    flipped = sealed[:20] + bytes([sealed[20] ^ 1]) + sealed[21:]
    with store.db() as db:
        staff_blob = db.scalar(sa.select(StaffAccount.totp_secret_sealed))
    with TestClient(app) as client:
        def login(code: str) -> Any:
            return client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD,
                                                    "totp_code": code})

        for blob in (flipped, staff_blob):  # altered; another account's (staff) value
            with store.engine.begin() as conn:
                conn.execute(sa.update(ShopperAccount).where(ShopperAccount.shopper_id == sid)
                             .values(totp_secret_sealed=blob))
            answer = login(totp.now())
            assert answer.status_code == 401, answer.text
            assert answer.json()["reason"] == "wrong e-mail, password or TOTP code"
        with store.engine.begin() as conn:
            conn.execute(sa.update(ShopperAccount).where(ShopperAccount.shopper_id == sid)
                         .values(totp_secret_sealed=sealed))
        assert login(_later(totp, 1)).status_code == 200


def test_the_export_holds_neither_the_secret_nor_its_sealed_form(store: Container) -> None:
    p = _privacy(store)
    sid, totp = _with_totp(p)
    sealed = _raw_row(store, sid)[1]
    assert sealed is not None
    with store.db() as db:
        data = collect(db, sid)
    (account,) = data["shopper_accounts"]
    assert account["totp_enabled"] is True
    assert not {"totp_secret", "totp_secret_sealed", "password_hash"} & set(account)
    text = repr(data)
    assert totp.secret not in text and base64.b64encode(sealed).decode() not in text
    assert sealed.hex() not in text


class _NoKekFile(FixedKeyProvider):
    """A key provider whose key file cannot be read."""

    def current(self) -> tuple[str, bytes]:
        raise KeyFileError("key file missing")


def test_the_account_service_needs_a_readable_kek(store: Container) -> None:
    with pytest.raises(KeyUnavailable, match="no current KEK for shopper secrets"):
        AccountService(sessions=store.db, shoppers=store.shoppers, clock=utc_now,
                       keys=_NoKekFile(os.urandom(32), "k"))
