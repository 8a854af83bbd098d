"""Per-person template data keys in the database, and the KEK files that wrap them.

:class:`SqlSubjectKeyStore` is identity's :class:`identity.keyring.SubjectKeyStore` over
the ``subject_keys`` table (one wrapped data key per shopper); deleting a row
crypto-shreds every copy of that shopper's templates (NIST SP 800-88r1, cryptographic
erase). :class:`KekFiles` names the key files of a KEK rotation and
:class:`ReloadingKeyProvider` re-reads them when they change, so a running service
follows a rotation. :class:`StoreKeyring` is the service's template protector: a
:class:`identity.keyring.Keyring` that still reads blobs of the older per-blob format
(``identity.protection`` blob version 1) until ``storefront keys rotate`` converts them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from identity.errors import KeyFileError, TemplateDecryptionError
from identity.keyring import KeyProvider, Keyring, WrappedKey
from identity.protection import BLOB_VERSION as LEGACY_BLOB_VERSION
from identity.protection import KeyFileProvider, TemplateCipher
from identity.snapshot import derive_key
from storefront.db.models import SubjectKey

_PAGE = 500


class SqlSubjectKeyStore:
    """Wrapped data keys in ``subject_keys``; every call is its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, subject_id: str) -> WrappedKey | None:
        """The subject's wrapped key, or None (never created, or shredded)."""
        with self._sessions() as db:
            row = db.get(SubjectKey, subject_id)
            return None if row is None else WrappedKey(row.subject_id, row.kek_id, row.wrapped)

    def add(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the subject has one (a concurrent writer won); returns the
        stored key."""
        try:
            with self._sessions.begin() as db:
                db.add(SubjectKey(subject_id=key.subject_id, kek_id=key.kek_id,
                                  wrapped=key.wrapped, created_at=datetime.now(UTC)))
            return key
        except IntegrityError:
            stored = self.get(key.subject_id)
            if stored is None:  # not a duplicate: e.g. no such shopper
                raise
            return stored

    def replace(self, old: WrappedKey, new: WrappedKey) -> bool:
        """Compare-and-swap: re-wrap only if ``old`` is still the stored key (a key shredded
        or re-wrapped meanwhile is left alone)."""
        with self._sessions.begin() as db:
            result = db.execute(sa.update(SubjectKey).where(
                SubjectKey.subject_id == old.subject_id, SubjectKey.kek_id == old.kek_id,
                SubjectKey.wrapped == old.wrapped,
            ).values(kek_id=new.kek_id, wrapped=new.wrapped, rotated_at=datetime.now(UTC)))
            return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def delete(self, subject_id: str) -> bool:
        """Destroy the subject's data key; True if there was one."""
        with self._sessions.begin() as db:
            result = db.execute(sa.delete(SubjectKey).where(SubjectKey.subject_id == subject_id))
            return int(result.rowcount or 0) > 0  # type: ignore[attr-defined]

    def all(self) -> Iterator[WrappedKey]:
        """Every stored key, read in pages of 500 by subject id (no transaction is held
        between pages, so callers may write while iterating)."""
        after = ""
        while True:
            with self._sessions() as db:
                rows = db.scalars(sa.select(SubjectKey).where(SubjectKey.subject_id > after)
                                  .order_by(SubjectKey.subject_id).limit(_PAGE)).all()
                page = [WrappedKey(r.subject_id, r.kek_id, r.wrapped) for r in rows]
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].subject_id

    def count_not_under(self, kek_id: str) -> int:
        """How many keys are wrapped under another KEK than ``kek_id``."""
        with self._sessions() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(SubjectKey)
                                 .where(SubjectKey.kek_id != kek_id)) or 0)


@dataclass(frozen=True)
class KekFiles:
    """The key files of one KEK: ``current`` (e.g. ``keys/kek.key``), ``previous`` (the
    KEK being retired, present only during a rotation) and ``next`` (a new KEK not yet
    promoted; present only if a rotation stopped between its two renames)."""

    current: Path

    @property
    def previous(self) -> Path:
        """``<current>.previous``."""
        return self.current.with_name(self.current.name + ".previous")

    @property
    def next(self) -> Path:
        """``<current>.next``."""
        return self.current.with_name(self.current.name + ".next")

    def readable(self) -> list[Path]:
        """Current first, then the previous KEK while a rotation is under way."""
        return [self.current] + ([self.previous] if self.previous.exists() else [])


class ReloadingKeyProvider:
    """:class:`identity.keyring.KeyProvider` over :class:`KekFiles` that re-reads the files
    when their size, inode or modification time changes (one ``stat`` per call), so a
    running service wraps new data keys under a KEK promoted by ``storefront keys rotate``.

    Raises KeyFileError like :class:`identity.protection.KeyFileProvider`.
    """

    def __init__(self, files: KekFiles, *, development: bool) -> None:
        self._files, self._development = files, development
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int, int], ...] = ()
        self._provider = self._load()

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        stats = []
        for path in (self._files.current, self._files.previous):
            try:
                st = os.stat(path)
                stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                stats.append((0, 0, 0))
        return tuple(stats)

    def _load(self) -> KeyFileProvider:
        self._stamp = self._signature()
        # never invent a key in the middle of a rotation: a missing current file then
        # means it is about to be promoted from ``.next``
        idle = not (self._files.previous.exists() or self._files.next.exists())
        return KeyFileProvider(self._files.readable(), development=self._development and idle)

    def _fresh(self) -> KeyFileProvider:
        with self._lock:
            if self._signature() != self._stamp:
                if not self._files.current.exists():  # mid-rotation rename: keep the last
                    return self._provider
                self._provider = self._load()
            return self._provider

    def current(self) -> tuple[str, bytes]:
        """(key id, KEK) of the current key file."""
        return self._fresh().current()

    def get(self, key_id: str) -> bytes:
        """The KEK of ``key_id`` (current or previous file); raises KeyFileError."""
        return self._fresh().get(key_id)

    def key_ids(self) -> tuple[str, ...]:
        """Ids of the KEKs readable now: current, then previous during a rotation."""
        return self._fresh().key_ids()


class StoreKeyring(Keyring):
    """The per-person :class:`identity.keyring.Keyring` that also opens legacy blobs
    (blob version 1 of :class:`identity.protection.TemplateCipher`, a data key inside
    each blob) with the KEK named in them. Legacy blobs cannot be crypto-shredded:
    ``storefront keys rotate`` re-encrypts them under the person's data key.
    """

    def __init__(self, provider: KeyProvider, store: SqlSubjectKeyStore) -> None:
        super().__init__(provider, store)
        self.provider, self.store = provider, store

    def decrypt(self, subject_id: str, blob: bytes) -> bytes:
        """Template bytes of a version-2 (per-person key) or version-1 (legacy) blob.

        Raises TemplateDecryptionError (shredded key, missing KEK, tampering)."""
        if blob[:1] != bytes([LEGACY_BLOB_VERSION]):
            return super().decrypt(subject_id, blob)
        return self.decrypt_legacy(subject_id, blob)

    def purpose_key(self, subject_id: str, info: bytes, *, create: bool) -> bytes | None:
        """A 32-byte key for another purpose than templates (``info``, e.g. the stored data
        exports), derived from the person's data key (HKDF-SHA256, RFC 5869): it is
        destroyed with that key (:meth:`shred`, on palm or account deletion), so whatever
        it encrypted becomes unreadable everywhere, backups included, once the KEK that
        wrapped the data key is rotated away. ``create``: make the person's data key when
        they have none (a shopper without palms). None when they have none and ``create``
        is False. Raises TemplateDecryptionError when the data key cannot be unwrapped."""
        stored = self._store.get(subject_id)
        if stored is None:
            if not create:
                return None
            stored = self._store.add(self._wrap(subject_id, os.urandom(32)))
        return derive_key(self._unwrap(stored), info)

    def decrypt_legacy(self, subject_id: str, blob: bytes) -> bytes:
        """Open a version-1 blob; raises TemplateDecryptionError."""
        key_id = blob[3 : 3 + blob[2]].decode("utf-8", "replace") if len(blob) > 3 else ""
        try:
            kek = self.provider.get(key_id)
        except KeyFileError:
            raise TemplateDecryptionError(
                f"legacy template blob needs KEK {key_id!r}, which is not available") from None
        return TemplateCipher(kek, key_id).decrypt(subject_id, blob)
