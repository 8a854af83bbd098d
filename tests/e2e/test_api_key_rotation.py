"""``storefront keys rotate`` under a running app: device keys and staff TOTP secrets.

The rotation is run on the app's own database and key files exactly as the command
does (:func:`storefront.cli_keys.promote_new_kek`, then :func:`storefront.cli_keys.rotate`),
and the app is neither restarted nor told: its key provider re-reads the key files.
A KEK the app cannot read is a server-side problem: 503 ``key_unavailable``, never
422 (the client's input) or 401 (the user's credentials), and nothing is stored.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.cli_keys import promote_new_kek, rotate
from storefront.db.models import DeviceNonce, StaffAccount, StaffToken
from storefront.devices.keys import DeviceKeyCipher
from storefront.devices.models import Device
from storefront.errors import KeyUnavailable
from storefront.subject_keys import (
    KekFiles,
    ReloadingKeyProvider,
    SqlSubjectKeyStore,
    StoreKeyring,
)

PASSWORD = "correct horse battery"


class Rotating:
    """A running store with a signed gate, a cart device and a manager with TOTP."""

    def __init__(self, store: Any) -> None:
        self.store, self.c = store, store.container
        self.files = KekFiles(self.c.settings.resolved_key_file())
        self.bare = TestClient(create_app(self.c))
        self.bare.__enter__()
        made = self.c.security.staff.add(staff_id="mia", role="manager", password=PASSWORD)
        assert made.totp_secret is not None
        self.totp = pyotp.TOTP(made.totp_secret)
        store.add_products({"APPLE-1": ("Apple, each", 35)})
        self.shopper = store.register("Dana")
        self.seq = 0

    def close(self) -> None:
        self.bare.__exit__(None, None, None)

    def login(self, password: str = PASSWORD) -> Any:
        # mia signs in several times within one 30-second step, and each step's code is
        # accepted once: forget the used step (what is tested here is the KEK rotation)
        with self.c.db.begin() as db:
            db.execute(sa.update(StaffAccount).where(StaffAccount.id == "mia")
                       .values(totp_last_step=None))
        return self.bare.post("/staff/login", json={"staff_id": "mia", "password": password,
                                                    "totp": self.totp.now()})

    def shop(self) -> str:
        """Open a session and pick an apple (signed by cart-1); returns the session id."""
        sid = self.c.gates.open_session(shopper_id=self.shopper, entry_method="palm")
        at = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
        self.seq += 1
        r = self.store.send(sid, {"kind": "picked", "product_code": "APPLE-1", "quantity": 1,
                                  "device_id": "cart-1", "device_seq": self.seq,
                                  "sensor_time": at})
        assert r.status_code == 201, r.text
        return sid

    def exit(self, sid: str) -> Any:
        """The gate's signed exit request."""
        return self.store.client.post(f"/sessions/{sid}/exit")

    def later(self) -> None:
        """As if the registry cache's TTL (30 s) had passed: keys are read from rows again."""
        self.c.security.registry._cache.clear()

    def keyring(self) -> StoreKeyring:
        provider = ReloadingKeyProvider(self.files, development=True)
        return StoreKeyring(provider, SqlSubjectKeyStore(self.c.db))

    def kek_ids(self) -> set[str]:
        with self.c.db() as db:
            return set(db.scalars(sa.select(Device.kek_id)))

    def counts(self) -> tuple[int, int]:
        """(device nonces, staff tokens) stored."""
        with self.c.db() as db:
            return (int(db.scalar(sa.select(sa.func.count()).select_from(DeviceNonce)) or 0),
                    int(db.scalar(sa.select(sa.func.count()).select_from(StaffToken)) or 0))


@pytest.fixture
def rotating(make_store: Any) -> Any:
    r = Rotating(make_store())
    yield r
    r.close()


def test_gate_cart_and_manager_login_follow_a_rotation_without_restart(rotating: Any) -> None:
    r = rotating
    assert r.login().status_code == 200
    first = r.shop()
    assert r.exit(first).status_code == 200
    old_ids = r.kek_ids()

    promote_new_kek(r.files)  # step 1 only: new KEK current, rows still under the old one
    r.later()
    mid = r.shop()
    assert r.exit(mid).status_code == 200
    assert r.login().status_code == 200

    report = rotate(r.c.db, r.files, r.keyring())  # re-seal everything, retire the old KEK
    assert report.device_keys == 2 and report.staff_secrets >= 1
    assert not r.files.previous.exists()
    assert r.kek_ids() == {report.new_kek_id} and r.kek_ids() != old_ids
    r.later()
    after = r.shop()
    exited = r.exit(after)
    assert exited.status_code == 200, exited.text
    assert r.login().status_code == 200
    new_key = r.c.security.registry.add(store_id=r.c.settings.store_id, device_id="gate-9",
                                        kind="gate")
    found = r.c.security.registry.lookup("gate-9")
    assert found is not None and found.key == new_key
    assert r.kek_ids() == {report.new_kek_id}


def _swap_key_file(path: Path, kek: bytes) -> None:
    """Replace the key file atomically (a new inode), as the rotation's rename does."""
    spare = path.with_name(path.name + ".swap")
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, kek)
    finally:
        os.close(fd)
    os.replace(spare, path)


def test_unreadable_kek_is_503_not_bad_input_or_bad_credentials(rotating: Any) -> None:
    r = rotating
    assert r.login().status_code == 200
    assert r.exit(r.shop()).status_code == 200  # gate-1 registered under the KEK
    sid = r.shop()
    right_kek = r.files.current.read_bytes()
    _swap_key_file(r.files.current, os.urandom(32))  # the rows' KEK is gone
    r.later()
    before = r.counts()

    gate = r.exit(sid)
    body = r.store.error_of(gate, 503)
    assert body["error"] == "key_unavailable" and "gate-1" in body["reason"]
    assert gate.headers["Retry-After"]
    login = r.store.error_of(r.login(), 503)
    assert login["error"] == "key_unavailable" and "mia" in login["reason"]
    # a wrong password is still the user's mistake, and learns nothing about keys
    assert r.store.error_of(r.login("wrong password here"), 401)["error"] == "unauthenticated"
    assert r.counts() == before  # no nonce spent, no token issued
    assert r.store.session(sid)["status"] == "open"

    _swap_key_file(r.files.current, right_kek)  # e.g. the key file restored
    r.later()
    assert r.login().status_code == 200  # the 503s were not counted as failed sign-ins
    exited = r.exit(sid)
    assert exited.status_code == 200, exited.text
    assert r.store.session(sid)["status"] != "open"


def test_device_key_sealed_under_another_kek_is_key_unavailable() -> None:
    kek, other = os.urandom(32), os.urandom(32)
    blob = DeviceKeyCipher(kek, "kek-a").seal("s1", "gate-1", b"k" * 32)
    assert DeviceKeyCipher(kek, "kek-a").open("s1", "gate-1", blob) == b"k" * 32
    with pytest.raises(KeyUnavailable, match="does not open with KEK"):
        DeviceKeyCipher(other, "kek-a").open("s1", "gate-1", blob)


def test_manager_signs_in_during_a_second_rotation_the_app_never_saw_the_first_of(
        rotating: Any) -> None:
    """Two rotations in a row with no staff sign-in between: while the second one is
    under way (new KEK promoted, TOTP secrets still under the KEK the first one made),
    the secret opens with the previous key file, not only with KEKs the app saw."""
    r = rotating
    assert r.login().status_code == 200  # the app has seen the first KEK only
    rotate(r.c.db, r.files, r.keyring())  # first rotation, complete; nobody signs in
    promote_new_kek(r.files)  # second rotation, step 1: secrets still under its .previous
    login = r.login()
    assert login.status_code == 200, login.text
    rotate(r.c.db, r.files, r.keyring())
    assert r.login().status_code == 200
