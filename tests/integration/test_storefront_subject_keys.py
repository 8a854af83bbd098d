"""Per-person data keys in the database: crypto-shredding, KEK rotation (resumable, while
serving), legacy per-blob templates, and a database copied without its KEK."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from identity.errors import KeyFileError, TemplateDecryptionError
from identity.imageio import encode_png
from identity.protection import TemplateCipher
from identity.synthetic import SyntheticPalms
from identity.template import MAGIC
from storefront.bootstrap import Container, bootstrap
from storefront.cli import app
from storefront.cli_keys import promote_new_kek, rotate
from storefront.db.engine import make_engine
from storefront.db.models import PalmTemplate, SubjectKey
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from storefront.subject_keys import KekFiles, ReloadingKeyProvider, SqlSubjectKeyStore, StoreKeyring

PALMS = SyntheticPalms(777)


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _start(settings: Settings) -> Container:
    return bootstrap(settings, processor=SimulatedProcessor(seed=1, decline_rate=0.0))


def _enrol(c: Container, palm: int) -> str:
    sid = c.shoppers.register(display_name=f"palm {palm}", payment_token=f"tok_{palm}").id
    c.shoppers.enrol_palm(shopper_id=sid, images=[_png(palm, k) for k in range(4)],
                          consent_text_version="2026-11")
    return sid


def _rotate(c: Container) -> None:
    files = KekFiles(c.settings.resolved_key_file())
    promote_new_kek(files)
    rotate(c.db, files, _keyring(c.db, files))


def _keyring(db: sessionmaker, files: KekFiles) -> StoreKeyring:  # type: ignore[type-arg]
    return StoreKeyring(ReloadingKeyProvider(files, development=True), SqlSubjectKeyStore(db))


def _copy_database(c: Container, target: Path) -> None:
    """A consistent copy of the SQLite file (WAL included), as a backup tool takes it."""
    src = sqlite3.connect(c.settings.data_dir / "storefront.db")
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _blobs(url: str) -> list[tuple[str, bytes]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                sa.select(PalmTemplate.shopper_id, PalmTemplate.ciphertext))]
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "store", database_url=url)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Container]:
    c = _start(Settings(data_dir=tmp_path / "store"))
    yield c
    c.close()


def test_each_person_gets_a_data_key_and_deletion_shreds_every_copy(
        sqlite_store: Container) -> None:
    c = sqlite_store
    alice, bob = _enrol(c, 0), _enrol(c, 1)
    with c.db() as db:
        assert {k.subject_id for k in db.scalars(sa.select(SubjectKey))} == {alice, bob}
    copies = _blobs(c.settings.resolved_database_url())  # a backup of the template rows
    assert all(blob[0] == 2 for _, blob in copies)
    assert c.identity.delete(subject_id=alice) == 4
    keyring = _keyring(c.db, KekFiles(c.settings.resolved_key_file()))
    for sid, blob in copies:
        if sid == alice:
            with pytest.raises(TemplateDecryptionError, match="no data key"):
                keyring.decrypt(sid, blob)
        else:
            assert keyring.decrypt(sid, blob)[:4] == MAGIC  # bob's templates are intact
    assert c.identity.identify(image=_png(0, 5)).outcome == "not_identified"
    assert c.identity.identify(image=_png(1, 5)).subject_id == bob


def test_full_backup_taken_before_deletion_is_shredded_by_the_next_rotation(
        sqlite_store: Container, tmp_path: Path) -> None:
    c = sqlite_store
    alice = _enrol(c, 2)
    backup = tmp_path / "backup.db"
    _copy_database(c, backup)
    c.identity.delete(subject_id=alice)
    _rotate(c)  # the KEK that wrapped the backup's data keys is retired
    keyring = _keyring(sessionmaker(make_engine(f"sqlite:///{backup}")),
                       KekFiles(c.settings.resolved_key_file()))
    blobs = [b for sid, b in _blobs(f"sqlite:///{backup}") if sid == alice]
    assert len(blobs) == 4
    for blob in blobs:
        with pytest.raises(TemplateDecryptionError, match="cannot be unwrapped"):
            keyring.decrypt(alice, blob)


def test_rotate_while_serving_then_identify_after_restart(settings: Settings) -> None:
    c = _start(settings)
    alice = _enrol(c, 3)
    old = KekFiles(settings.resolved_key_file()).current.read_bytes()
    _rotate(c)
    files = KekFiles(settings.resolved_key_file())
    assert files.current.read_bytes() != old and not files.previous.exists()
    assert c.identity.identify(image=_png(3, 5)).subject_id == alice
    bob = _enrol(c, 4)  # the running service follows the new KEK
    _rotate(c)  # twice
    c.close()
    c = _start(settings)
    try:
        assert c.identity.identify(image=_png(3, 6)).subject_id == alice
        assert c.identity.identify(image=_png(4, 6)).subject_id == bob
        with c.db() as db:
            kek_ids = set(db.scalars(sa.select(SubjectKey.kek_id)))
        assert kek_ids == {c.identity._cipher.key_id}  # type: ignore[attr-defined]
    finally:
        c.close()


def test_interrupted_rotation_resumes(sqlite_store: Container) -> None:
    c = sqlite_store
    alice, bob = _enrol(c, 5), _enrol(c, 6)
    files = KekFiles(c.settings.resolved_key_file())
    promote_new_kek(files)
    keyring = _keyring(c.db, files)
    first = next(iter(keyring.store.all()))  # one key re-wrapped, then the process died
    keyring.store.replace(first, keyring._wrap(first.subject_id, keyring._unwrap(first)))
    assert keyring.store.count_not_under(keyring.key_id) == 1
    assert files.previous.exists()
    # a second crash, between the two renames of a later rotation step
    os.replace(files.current, files.next)
    with pytest.raises(KeyFileError, match="does not exist"):
        _keyring(c.db, files)  # no new key is invented mid-rotation, even in development
    promote_new_kek(files)
    report = rotate(c.db, files, _keyring(c.db, files))
    assert report.data_keys == 1 and not files.previous.exists()
    c.close()
    c2 = _start(c.settings)
    try:
        assert c2.identity.identify(image=_png(5, 5)).subject_id == alice
        assert c2.identity.identify(image=_png(6, 5)).subject_id == bob
    finally:
        c2.close()


def test_database_copied_without_the_kek_yields_no_template(
        sqlite_store: Container, tmp_path: Path) -> None:
    _enrol(sqlite_store, 7)
    stolen = tmp_path / "thief" / "storefront.db"
    stolen.parent.mkdir()
    _copy_database(sqlite_store, stolen)
    with pytest.raises(TemplateDecryptionError):  # the thief's own KEK opens nothing
        _start(Settings(data_dir=stolen.parent))
    keyring = _keyring(sessionmaker(make_engine(f"sqlite:///{stolen}")),
                       KekFiles(stolen.parent / "keys" / "kek.key"))
    for sid, blob in _blobs(f"sqlite:///{stolen}"):
        with pytest.raises(TemplateDecryptionError):
            keyring.decrypt(sid, blob)


def test_legacy_per_blob_templates_are_read_and_converted_by_rotation(
        sqlite_store: Container) -> None:
    c = sqlite_store
    alice = _enrol(c, 8)
    kid, kek = c.identity._cipher.provider.current()  # type: ignore[attr-defined]
    legacy = TemplateCipher(kek, kid)
    keyring = _keyring(c.db, KekFiles(c.settings.resolved_key_file()))
    with c.db.begin() as db:  # rewrite the rows as the old TemplateCipher stored them
        for row in db.scalars(sa.select(PalmTemplate)):
            row.ciphertext = legacy.encrypt(alice, keyring.decrypt(alice, row.ciphertext))
    assert {b[0] for _, b in _blobs(c.settings.resolved_database_url())} == {1}
    c.close()
    c2 = _start(c.settings)  # legacy blobs still load
    try:
        assert c2.identity.identify(image=_png(8, 5)).subject_id == alice
        _rotate(c2)
        assert {b[0] for _, b in _blobs(c.settings.resolved_database_url())} == {2}
        c2.identity.delete(subject_id=alice)
        assert c2.identity.identify(image=_png(8, 6)).outcome == "not_identified"
    finally:
        c2.close()


def test_cli_rotate_refuses_a_missing_or_unsafe_key_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 2  # no store there yet
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 2 and "does not exist" in result.output
    key = tmp_path / "store" / "keys" / "kek.key"
    key.parent.mkdir(parents=True)
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 2 and "group or others" in result.output
    key.chmod(0o600)
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "retired" in result.output and key.read_bytes() and not KekFiles(key).previous.exists()
    with pytest.raises(KeyFileError):
        promote_new_kek(KekFiles(tmp_path / "absent.key"))


def test_device_keys_and_staff_totp_secrets_are_resealed(tmp_path: Path) -> None:
    import pyotp

    settings = Settings(data_dir=tmp_path / "store")
    c = _start(settings)
    key = c.security.registry.add(store_id=settings.store_id, device_id="gate-1", kind="gate")
    manager = c.security.staff.add(staff_id="mia", role="manager",
                                   password="correct horse battery")
    assert manager.totp_secret
    _rotate(c)
    _rotate(c)  # twice: each rotation re-seals them again
    c.close()
    c = _start(settings)
    try:
        device = c.security.registry.lookup("gate-1")
        assert device is not None and device.key == key
        token = c.security.staff.login(staff_id="mia", password="correct horse battery",
                                       totp=pyotp.TOTP(manager.totp_secret).now())
        assert c.security.staff.authenticate(token.token).role == "manager"
    finally:
        c.close()
