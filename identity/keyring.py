"""Envelope encryption with one data key per enrolled person (crypto-shredding).

Each person (subject) gets a random 256-bit data key (DEK), stored only *wrapped*
(AES-256-GCM) under a key-encryption key (KEK) from a :class:`KeyProvider`; every
template of that person is encrypted under the DEK (AES-256-GCM, NIST SP 800-38D).
Destroying the wrapped DEK (:meth:`Keyring.shred`) makes every copy of the person's
templates - database rows, backups, replicas - undecryptable: crypto-shredding
(NIST SP 800-88r1, "cryptographic erase"). KEK rotation (:meth:`Keyring.rotate`)
re-wraps DEKs only; template blobs are untouched, and the old KEK stays readable
through the provider until every DEK is re-wrapped.

Associated data: a wrapped DEK is bound to its subject id and KEK id; a template blob
(version 2) to its subject id, template format version and DEK id.

Blob version 2::

    1 byte  blob version (2), 1 byte template format version,
    1 byte  DEK id length n, n bytes DEK id (UTF-8),
    12 bytes nonce, ciphertext + 16-byte tag
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.errors import KeyFileError, TemplateDecryptionError
from identity.protection import _template_format_version
from identity.snapshot import derive_key

BLOB_VERSION = 2
_WRAP_LABEL = b"storefront/subject-dek/v1\x00"
_BLOB_LABEL = b"storefront/palm-template/v2\x00"


class KeyProvider(Protocol):
    """Source of KEKs: the current one and, during a rotation, older ones by id."""

    def current(self) -> tuple[str, bytes]:
        """(key id, 32-byte KEK) used to wrap new and re-wrapped data keys."""
        ...

    def get(self, key_id: str) -> bytes:
        """The KEK of ``key_id``; raises KeyFileError when it is not available."""
        ...


class ListingKeyProvider(KeyProvider, Protocol):
    """A KeyProvider that can also name every KEK it can read now."""

    def key_ids(self) -> tuple[str, ...]:
        """Ids of the readable KEKs, the current one first."""
        ...


class FixedKeyProvider:
    """A :class:`ListingKeyProvider` of one KEK that never changes (tools, benches,
    tests, and callers given a bare key)."""

    def __init__(self, kek: bytes, kek_id: str) -> None:
        self._kek, self._id = kek, kek_id

    def current(self) -> tuple[str, bytes]:
        """(key id, KEK)."""
        return self._id, self._kek

    def key_ids(self) -> tuple[str, ...]:
        """The one key id."""
        return (self._id,)

    def get(self, key_id: str) -> bytes:
        """The KEK when ``key_id`` names it; raises KeyFileError otherwise."""
        if key_id != self._id:
            raise KeyFileError(f"no key file holds KEK {key_id!r}")
        return self._kek


@dataclass(frozen=True)
class WrappedKey:
    """A subject's DEK wrapped under KEK ``kek_id``: 12-byte nonce + 48 bytes (key + tag)."""

    subject_id: str
    kek_id: str
    wrapped: bytes


class SubjectKeyStore(Protocol):
    """Port to the table of wrapped data keys (one row per subject)."""

    def get(self, subject_id: str) -> WrappedKey | None:
        """The subject's wrapped key, or None."""
        ...

    def add(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the subject has one; returns the stored one."""
        ...

    def replace(self, old: WrappedKey, new: WrappedKey) -> bool:
        """Swap ``old`` for ``new`` if ``old`` is still stored (compare-and-swap)."""
        ...

    def delete(self, subject_id: str) -> bool:
        """Destroy the subject's key; True if there was one."""
        ...

    def all(self) -> Iterator[WrappedKey]:
        """Every stored key."""
        ...


class InMemorySubjectKeyStore:
    """A thread-safe :class:`SubjectKeyStore` in memory (tests, development)."""

    def __init__(self) -> None:
        self._keys: dict[str, WrappedKey] = {}
        self._lock = threading.Lock()

    def get(self, subject_id: str) -> WrappedKey | None:
        """The subject's wrapped key, or None."""
        with self._lock:
            return self._keys.get(subject_id)

    def add(self, key: WrappedKey) -> WrappedKey:
        """Store ``key`` unless the subject has one; returns the stored one."""
        with self._lock:
            return self._keys.setdefault(key.subject_id, key)

    def replace(self, old: WrappedKey, new: WrappedKey) -> bool:
        """Compare-and-swap of one subject's key."""
        with self._lock:
            if self._keys.get(old.subject_id) != old:
                return False
            self._keys[old.subject_id] = new
            return True

    def delete(self, subject_id: str) -> bool:
        """Destroy the subject's key; True if there was one."""
        with self._lock:
            return self._keys.pop(subject_id, None) is not None

    def all(self) -> Iterator[WrappedKey]:
        """A snapshot of every stored key."""
        with self._lock:
            return iter(list(self._keys.values()))


class Keyring:
    """Per-subject envelope encryption of templates (see module); same calls as
    :class:`identity.protection.TemplateCipher` plus :meth:`shred` and :meth:`rotate`."""

    def __init__(self, provider: KeyProvider, store: SubjectKeyStore) -> None:
        self._provider, self._store = provider, store

    @property
    def key_id(self) -> str:
        """Id of the current KEK."""
        return self._provider.current()[0]

    def derive_key(self, info: bytes) -> bytes:
        """A key for another purpose, derived from the current KEK (HKDF-SHA256)."""
        return derive_key(self._provider.current()[1], info)

    def _wrap(self, subject_id: str, dek: bytes) -> WrappedKey:
        kek_id, kek = self._provider.current()
        nonce = os.urandom(12)
        wrapped = AESGCM(kek).encrypt(nonce, dek, _wrap_aad(subject_id, kek_id))
        return WrappedKey(subject_id, kek_id, nonce + wrapped)

    def _unwrap(self, key: WrappedKey) -> bytes:
        try:
            kek = self._provider.get(key.kek_id)
            return AESGCM(kek).decrypt(key.wrapped[:12], key.wrapped[12:],
                                       _wrap_aad(key.subject_id, key.kek_id))
        except (InvalidTag, KeyFileError):
            raise TemplateDecryptionError(
                f"the data key of {key.subject_id!r} cannot be unwrapped (KEK {key.kek_id!r})"
            ) from None

    def encrypt(self, subject_id: str, template_bytes: bytes) -> bytes:
        """Encrypt serialised template bytes under the subject's DEK (created on first use).

        Raises TemplateFormatError if ``template_bytes`` is not a serialised template.
        """
        fmt = _template_format_version(template_bytes)
        stored = self._store.get(subject_id)
        if stored is None:
            stored = self._store.add(self._wrap(subject_id, AESGCM.generate_key(bit_length=256)))
        dek = self._unwrap(stored)
        dek_id = _dek_id(dek).encode()
        header = struct.pack(">BBB", BLOB_VERSION, fmt, len(dek_id)) + dek_id
        nonce = os.urandom(12)
        return header + nonce + AESGCM(dek).encrypt(nonce, template_bytes,
                                                    _blob_aad(header, subject_id))

    def decrypt(self, subject_id: str, blob: bytes) -> bytes:
        """The template bytes of ``blob``. Raises TemplateDecryptionError when the subject's
        key is gone (shredded), unwrapping fails, or any byte or binding is wrong."""
        if len(blob) < 3 or blob[0] != BLOB_VERSION:
            raise TemplateDecryptionError("unknown or truncated template blob")
        header = blob[: 3 + blob[2]]
        stored = self._store.get(subject_id)
        if stored is None:
            raise TemplateDecryptionError(f"no data key for {subject_id!r} (deleted)")
        dek = self._unwrap(stored)
        if header[3:] != _dek_id(dek).encode():
            raise TemplateDecryptionError("template was encrypted under another data key")
        body = blob[len(header) :]
        try:
            plain = AESGCM(dek).decrypt(body[:12], body[12:], _blob_aad(header, subject_id))
        except InvalidTag:
            raise TemplateDecryptionError("template failed authentication") from None
        if _template_format_version(plain) != header[1]:
            raise TemplateDecryptionError("template format version does not match the blob")
        return plain

    def shred(self, subject_id: str) -> bool:
        """Destroy the subject's data key (crypto-shredding); True if one existed."""
        return self._store.delete(subject_id)

    def rotate(self) -> int:
        """Re-wrap every DEK not under the current KEK; returns how many were re-wrapped.

        Safe while the service runs: each swap is compare-and-swap, so a key shredded
        meanwhile stays shredded. Raises TemplateDecryptionError if an old KEK is missing.
        """
        current, count = self.key_id, 0
        for key in self._store.all():
            if key.kek_id != current:
                count += self._store.replace(key, self._wrap(key.subject_id, self._unwrap(key)))
        return count


def _dek_id(dek: bytes) -> str:
    return "dek-" + hashlib.sha256(b"storefront-dek-id\x00" + dek).hexdigest()[:16]


def _wrap_aad(subject_id: str, kek_id: str) -> bytes:
    s, k = subject_id.encode(), kek_id.encode()
    return _WRAP_LABEL + struct.pack(">I", len(s)) + s + k


def _blob_aad(header: bytes, subject_id: str) -> bytes:
    s = subject_id.encode()
    return _BLOB_LABEL + header + struct.pack(">I", len(s)) + s
