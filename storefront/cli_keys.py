"""``storefront keys rotate``: a new key-encryption key (KEK), every secret re-wrapped.

Steps, each idempotent, so an interrupted run is finished by running it again:

1. a new random KEK is written to ``<key file>.next`` (mode 0600), then the current file
   is renamed ``<key file>.previous`` and ``.next`` becomes the key file: from then on
   running services (:class:`storefront.subject_keys.ReloadingKeyProvider`) wrap new data
   keys under the new KEK and can still read the previous one;
2. every shopper data key is re-wrapped, row by row with compare-and-swap
   (:meth:`identity.keyring.Keyring.rotate`); legacy per-blob templates (blob version 1)
   are re-encrypted under their shopper's data key; device HMAC keys and staff and
   shopper TOTP secrets are re-sealed (a shopper secret still stored in clear is sealed);
3. when nothing is left under the previous KEK, ``.previous`` is deleted (retired).

Running processes follow a rotation without a restart: palm data keys, device keys and
staff and shopper TOTP secrets are all opened through the reloading key provider, which re-reads the
key files (a device key row names the KEK that sealed it; a TOTP secret is tried with the
current KEK, then with the previous key file's and KEKs the process saw earlier).
Source of the scheme: envelope encryption with KEK rotation, NIST SP 800-57 Part 1 r5
(5.3 cryptoperiods, 8.2.3 key update).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sqlalchemy as sa
import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from identity.errors import IdentityError, KeyFileError
from identity.protection import load_or_create_key_file
from storefront.cli_errors import cli_errors, require_kek_opens_store, require_store
from storefront.shopper_totp import reseal_shopper_totp, seal_clear_totp_secrets
from storefront.subject_keys import KekFiles, SqlSubjectKeyStore, StoreKeyring

keys_app = typer.Typer(help="Key-encryption key (KEK) of templates and device secrets.",
                       no_args_is_help=True)
console = Console()


@dataclass(frozen=True)
class RotationReport:
    """What one rotation did: KEK ids and counts of re-wrapped secrets."""

    old_kek_id: str
    new_kek_id: str
    data_keys: int
    legacy_templates: int
    device_keys: int
    staff_secrets: int
    shopper_secrets: int = 0


def promote_new_kek(files: KekFiles) -> None:
    """Step 1: make a new KEK current, keeping the old one as ``.previous``.

    Does nothing when a rotation is already under way (``.previous`` exists). Raises
    KeyFileError when the current key file is missing or unsafe.
    """
    if files.previous.exists():
        if not files.current.exists() and files.next.exists():  # stopped between renames
            os.replace(files.next, files.current)
        load_or_create_key_file(files.previous, create=False)
        load_or_create_key_file(files.current, create=False)
        return
    load_or_create_key_file(files.current, create=False)
    files.next.unlink(missing_ok=True)  # an unpromoted key never wrapped anything
    load_or_create_key_file(files.next, create=True)
    os.replace(files.current, files.previous)
    os.replace(files.next, files.current)


def rotate(db: sessionmaker[Session], files: KekFiles, keyring: StoreKeyring) -> RotationReport:
    """Steps 1-3 (see module) over the database ``db``; returns what was re-wrapped.

    ``keyring`` reads ``files``; build it after :func:`promote_new_kek` has run.

    Raises KeyFileError (missing or unsafe key file; re-wrapping incomplete, so the
    previous KEK is kept) or TemplateDecryptionError (a secret no available KEK opens).
    """
    promote_new_kek(files)
    old_kek, old_id = load_or_create_key_file(files.previous, create=False)
    new_id, new_kek = keyring.provider.current()
    data_keys = keyring.rotate()
    legacy = _convert_legacy_templates(db, keyring)
    devices = _reseal_devices(db, old_kek, old_id, new_kek, new_id)
    staff = _reseal_staff(db, old_kek, new_kek)
    shoppers = reseal_shopper_totp(db, old_kek, new_kek)
    seal_clear_totp_secrets(db, new_kek)  # rows no service has started on since 0013
    left = keyring.store.count_not_under(new_id)
    if left:
        raise KeyFileError(f"{left} data key(s) are still wrapped under another KEK than "
                           f"{new_id!r}; the previous KEK is kept: run the rotation again")
    files.previous.unlink()
    return RotationReport(old_id, new_id, data_keys, legacy, devices, staff, shoppers)


def _convert_legacy_templates(db: sessionmaker[Session], keyring: StoreKeyring) -> int:
    from storefront.db.models import PalmTemplate

    count, after = 0, ""
    while True:
        with db() as s:
            rows = s.execute(sa.select(PalmTemplate.template_id, PalmTemplate.shopper_id,
                                       PalmTemplate.ciphertext)
                             .where(PalmTemplate.template_id > after)
                             .order_by(PalmTemplate.template_id).limit(500)).all()
        for tid, sid, blob in rows:
            if blob[:1] == b"\x01":
                new = keyring.encrypt(sid, keyring.decrypt_legacy(sid, blob))
                with db.begin() as s:  # compare-and-swap: a deleted row stays deleted
                    result = s.execute(sa.update(PalmTemplate).where(
                        PalmTemplate.template_id == tid, PalmTemplate.ciphertext == blob)
                        .values(ciphertext=new))
                    count += int(result.rowcount or 0)  # type: ignore[attr-defined]
        if len(rows) < 500:
            return count
        after = rows[-1][0]


def _reseal_devices(db: sessionmaker[Session], old_kek: bytes, old_id: str,
                    new_kek: bytes, new_id: str) -> int:
    from storefront.devices.keys import DeviceKeyCipher
    from storefront.devices.models import Device

    old, new, count = DeviceKeyCipher(old_kek, old_id), DeviceKeyCipher(new_kek, new_id), 0
    with db() as s:
        rows = s.execute(sa.select(Device.id, Device.store_id, Device.key_ciphertext)
                         .where(Device.kek_id == old_id)).all()
    for device_id, store_id, blob in rows:
        sealed = new.seal(store_id, device_id, old.open(store_id, device_id, blob))
        with db.begin() as s:
            result = s.execute(sa.update(Device).where(
                Device.id == device_id, Device.kek_id == old_id, Device.key_ciphertext == blob)
                .values(key_ciphertext=sealed, kek_id=new_id))
            count += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return count


def _reseal_staff(db: sessionmaker[Session], old_kek: bytes, new_kek: bytes) -> int:
    """Staff TOTP secrets carry no KEK id: a secret that the new KEK already opens is
    left alone (idempotent)."""
    from storefront.clock import utc_now
    from storefront.db.models import StaffAccount
    from storefront.errors import StorefrontError
    from storefront.security.staff import StaffService

    old = StaffService(db, old_kek, utc_now, token_ttl_s=60)
    new = StaffService(db, new_kek, utc_now, token_ttl_s=60)
    with db() as s:
        rows = s.execute(sa.select(StaffAccount.id, StaffAccount.totp_secret_sealed)
                         .where(StaffAccount.totp_secret_sealed.is_not(None))).all()
    count = 0
    for staff_id, blob in rows:
        if blob is None:
            continue
        try:
            new._open(staff_id, blob)
            continue
        except StorefrontError:
            sealed = new._seal(staff_id, old._open(staff_id, blob))
        with db.begin() as s:
            result = s.execute(sa.update(StaffAccount).where(
                StaffAccount.id == staff_id, StaffAccount.totp_secret_sealed == blob)
                .values(totp_secret_sealed=sealed))
            count += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return count


@keys_app.command("rotate")
@cli_errors
def rotate_command() -> None:
    """Make a new KEK, re-wrap every data key and device/staff/shopper secret, retire the
    old KEK. Exit 2, nothing created, when there is no store at the configured place."""
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade
    from storefront.errors import StorefrontError
    from storefront.settings import Settings
    from storefront.subject_keys import ReloadingKeyProvider

    settings = Settings()
    require_store(settings)
    # Before a new KEK is promoted: a key file replaced by another key would otherwise be
    # kept as the previous one and the key the store was made with lost for good.
    require_kek_opens_store(settings)
    files = KekFiles(settings.resolved_key_file())
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine)
        db = sessionmaker(engine, expire_on_commit=False)
        promote_new_kek(files)
        provider = ReloadingKeyProvider(files, development=settings.environment == "development")
        report = rotate(db, files, StoreKeyring(provider, SqlSubjectKeyStore(db)))
    except (IdentityError, StorefrontError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    console.print(f"KEK {report.old_kek_id} retired; current KEK {report.new_kek_id}; "
                  f"re-wrapped {report.data_keys} data key(s), {report.legacy_templates} "
                  f"legacy template(s), {report.device_keys} device key(s), "
                  f"{report.staff_secrets} staff secret(s), {report.shopper_secrets} shopper "
                  f"TOTP secret(s)")

