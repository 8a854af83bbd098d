"""Does the key-encryption key (KEK) open what the store holds sealed under it?

A key file replaced by another valid key after the store was made (or another store's)
reads fine, and every command would then fail later, on the first secret it opens, or,
worse, seal new secrets under the wrong key beside the old ones. Start-up and the
commands that open a store's secrets call :func:`require_kek_opens_store` first.

What a store holds under its KEK, and how each is checked (read only, nothing created):

* per-person data keys (``subject_keys.kek_id``), legacy version-1 template blobs (the KEK
  id in their header) and device keys (``devices.kek_id``) name their KEK: every id found
  must be held by the current key file or, during a rotation, the previous one;
* staff and shopper TOTP secrets (``totp_secret_sealed``) carry no KEK id: up to
  :data:`SEALED_SAMPLE` of each kind are opened (AES-256-GCM, their own associated data)
  with the key files' KEKs, and one that none opens is a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from storefront.cli_errors import ConfigError, KekMismatch

if TYPE_CHECKING:
    from storefront.settings import Settings

LEGACY_HEADER_BYTES = 23
"""Bytes of a legacy (version 1) template blob's header read to find its KEK id: version,
format, id length, and the 20 characters of ``identity.protection.key_id_for``'s ids."""
SEALED_SAMPLE = 3
"""Sealed TOTP secrets of each kind (staff, shopper) opened to test the KEK."""


@dataclass
class Holdings:
    """What the store holds sealed: per KEK id, counts by kind (``data key``, ``legacy
    template``, ``device key``); and sampled sealed secrets as (kind, owner id, blob)."""

    by_kek: dict[str, dict[str, int]] = field(default_factory=dict)
    sealed: list[tuple[str, str, bytes]] = field(default_factory=list)

    def count(self, kek_id: str, kind: str, n: int) -> None:
        """Add ``n`` items of ``kind`` under ``kek_id``."""
        kinds = self.by_kek.setdefault(kek_id, {})
        kinds[kind] = kinds.get(kind, 0) + n


def require_kek_opens_store(settings: Settings) -> None:
    """Refuse (:class:`storefront.cli_errors.KekMismatch`, exit 2 under ``cli_errors``) a
    key-encryption key file that exists and is readable but does not open what the store
    holds sealed (module docstring).

    Returns at once when the SQLite file does not exist yet or when the key file is
    missing (the callers' own checks refuse that); raises KeyFileError, before the
    database is opened, when something other than a regular file is there. The key
    files (current, and previous during a rotation) are read before the caller opens
    the store for writing: one that cannot be used (empty, truncated, not 32 bytes,
    readable by others, unreadable) raises ConfigError naming STOREFRONT_KEY_FILE when
    the store holds something sealed, else the KeyFileError (or OSError) the caller's
    own reading of it would raise later; either way before anything is written (the
    database is only read, :func:`storefront.db.existing.reading_engine`: a SQLite
    file's ``-wal``/``-shm`` files left as found). The database's own errors are raised
    for :func:`storefront.cli_errors.explain`.
    """
    from identity.errors import KeyFileError
    from identity.protection import load_or_create_key_file
    from storefront.subject_keys import KekFiles

    url = settings.resolved_database_url()
    if make_url(url).get_backend_name() == "sqlite" and \
            not Path(make_url(url).database or "").is_file():
        return
    files = KekFiles(settings.resolved_key_file())
    if not files.current.exists():
        return
    if not files.current.is_file():  # a folder, a device: refused as the caller would
        load_or_create_key_file(files.current, create=False)  # raises KeyFileError
    held = _holdings(url)
    try:
        keys = [load_or_create_key_file(path, create=False) for path in files.readable()]
    except KeyFileError as exc:
        if not held.by_kek and not held.sealed:
            raise  # as the caller would have, once it had opened the store
        raise ConfigError(f"{exc.reason} (STOREFRONT_KEY_FILE or "
                          f"STOREFRONT_STATE_DIR)") from exc
    if not held.by_kek and not held.sealed:
        return
    ids = {kek_id for _, kek_id in keys}
    missing = {kek_id: kinds for kek_id, kinds in held.by_kek.items() if kek_id not in ids}
    unopened = [item for item in held.sealed
                if not any(_opens(kek, *item) for kek, _ in keys)]
    if missing or unopened:
        raise KekMismatch(_reason(files.current, keys[0][1], missing, unopened))


def _opens(kek: bytes, kind: str, owner_id: str, blob: bytes) -> bool:
    """Whether ``kek`` opens the sealed TOTP secret ``blob`` of ``owner_id`` (``kind``:
    ``staff`` or ``shopper``)."""
    from storefront.security.sealing import SecretSealer
    from storefront.security.staff import STAFF_TOTP_LABEL
    from storefront.shopper_totp import SHOPPER_TOTP_LABEL

    label = STAFF_TOTP_LABEL if kind == "staff" else SHOPPER_TOTP_LABEL
    return SecretSealer(kek, label=label, kind=kind).opens(owner_id, blob)


def _reason(path: Path, held: str, missing: dict[str, dict[str, int]],
            unopened: list[tuple[str, str, bytes]]) -> str:
    """One line for KekMismatch: the key file and its KEK id, what it does not open, what
    to do."""
    totals: dict[str, int] = {}
    for kinds in missing.values():
        for kind, n in kinds.items():
            totals[kind] = totals.get(kind, 0) + n
    parts = [f"{n} {kind}(s)" for kind, n in totals.items()]
    what = " and ".join(parts)
    if missing:
        ids = ", ".join(repr(kek_id) for kek_id in sorted(missing))
        what = f"{what} wrapped under KEK {ids}, which no key file holds"
    if unopened:
        owners = " and ".join(sorted({kind for kind, _, _ in unopened}))
        sealed = f"sealed {owners} one-time-code secrets it cannot open"
        what = f"{what}; {sealed}" if what else sealed
    return (f"STOREFRONT_KEY_FILE: the key file {path} holds KEK {held!r}, which does not "
            f"open the store's data keys ({what}): the key file was replaced or is another "
            f"store's; put back the key the store was made with (check STOREFRONT_KEY_FILE "
            f"and STOREFRONT_STATE_DIR)")


def _holdings(url: str) -> Holdings:
    """What the database at ``url`` holds sealed (tables a database not yet migrated lacks
    are skipped). Reads KEK ids grouped in the database, the first bytes of legacy blobs
    and at most :data:`SEALED_SAMPLE` sealed secrets of each kind."""
    from storefront.db.existing import reading_engine

    engine = reading_engine(url)  # a SQLite file's -wal/-shm files left as found
    held = Holdings()
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            for table, kind in (("subject_keys", "data key"), ("devices", "device key")):
                if table in tables:
                    _count_kek_ids(conn, table, kind, held)
            if "palm_templates" in tables:
                _count_legacy_templates(conn, held)
            for table, key, kind in (("staff_accounts", "id", "staff"),
                                     ("shopper_accounts", "shopper_id", "shopper")):
                if table in tables:
                    _sample_sealed(conn, table, key, kind, held)
    finally:
        engine.dispose()
    return held


def _count_kek_ids(conn: Connection, table: str, kind: str, held: Holdings) -> None:
    rows = sa.table(table, sa.column("kek_id", sa.String()))
    for kek_id, n in conn.execute(sa.select(rows.c.kek_id, sa.func.count())
                                  .group_by(rows.c.kek_id)):
        held.count(str(kek_id), kind, int(n))


def _count_legacy_templates(conn: Connection, held: Holdings) -> None:
    blobs = sa.table("palm_templates", sa.column("ciphertext", sa.LargeBinary()))
    head = sa.func.substr(blobs.c.ciphertext, 1, LEGACY_HEADER_BYTES)
    legacy = sa.func.substr(blobs.c.ciphertext, 1, 1) == sa.literal(b"\x01", sa.LargeBinary())
    for header, n in conn.execute(sa.select(head, sa.func.count()).where(legacy)
                                  .group_by(head)):
        raw = bytes(header)
        kek_id = raw[3:3 + raw[2]].decode("utf-8", "replace") if len(raw) > 3 else ""
        held.count(kek_id, "legacy template", int(n))


def _sample_sealed(conn: Connection, table: str, key: str, kind: str, held: Holdings) -> None:
    rows = sa.table(table, sa.column(key, sa.String()),
                    sa.column("totp_secret_sealed", sa.LargeBinary()))
    owner, blob = rows.c[key], rows.c.totp_secret_sealed
    for owner_id, sealed in conn.execute(sa.select(owner, blob).where(blob.is_not(None))
                                         .order_by(owner).limit(SEALED_SAMPLE)):
        held.sealed.append((kind, str(owner_id), bytes(sealed)))
