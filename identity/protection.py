"""Envelope encryption of palm templates at rest (AES-256-GCM, NIST SP 800-38D).

Each encryption draws a fresh random 256-bit data key, encrypts the template with
it, and wraps (encrypts) the data key with the key-encryption key (KEK). Both
AES-GCM operations authenticate the same associated data: the blob header
(blob version, template format version, key id) and the subject id, so a blob
moved to another subject, re-labelled with another key id, or altered in any
byte fails to decrypt.

Blob version 1::

    1 byte   blob version (1)
    1 byte   template format version
    1 byte   key id length n (1..255), then n bytes key id (UTF-8)
    12 bytes nonce of the key wrap, 48 bytes wrapped data key (32 + 16 tag)
    12 bytes nonce of the payload, then ciphertext + 16-byte tag
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.errors import KeyFileError, TemplateDecryptionError, TemplateFormatError
from identity.template import MAGIC

BLOB_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
_AAD_LABEL = b"storefront/palm-template/v1\x00"


class TemplateProtector(Protocol):
    """What :class:`identity.service.IdentityService` needs to protect templates at rest:
    :class:`TemplateCipher` (a data key per blob) or :class:`identity.keyring.Keyring`
    (a data key per person)."""

    @property
    def key_id(self) -> str:
        """Id of the current KEK."""
        ...

    def encrypt(self, subject_id: str, template_bytes: bytes) -> bytes:
        """Encrypt serialised template bytes of ``subject_id``."""
        ...

    def decrypt(self, subject_id: str, blob: bytes) -> bytes:
        """Decrypt a blob of ``subject_id``; raises TemplateDecryptionError."""
        ...

    def derive_key(self, info: bytes) -> bytes:
        """A 32-byte key derived from the current KEK for ``info``."""
        ...

    def shred(self, subject_id: str) -> bool:
        """Destroy key material of ``subject_id``; True if any was destroyed."""
        ...


class TemplateCipher:
    """Encrypts and decrypts template bytes for one subject under one KEK.

    ``kek``: 32 bytes (AES-256). ``key_id``: 1..255 UTF-8 bytes naming the KEK, stored
    in every blob so that key rotation can tell which KEK a blob needs.
    Raises ValueError on a bad key or key id.
    """

    def __init__(self, kek: bytes, key_id: str) -> None:
        if len(kek) != KEY_BYTES:
            raise ValueError(f"the KEK must be {KEY_BYTES} bytes, got {len(kek)}")
        encoded = key_id.encode("utf-8")
        if not 0 < len(encoded) <= 255:
            raise ValueError("key id must be 1..255 bytes of UTF-8")
        self._kek = AESGCM(kek)
        self._kek_bytes = kek
        self.key_id = key_id
        self._key_id_bytes = encoded

    def derive_key(self, info: bytes) -> bytes:
        """A 32-byte key for another purpose (``info`` label), HKDF-SHA256 of the KEK (RFC 5869)."""
        from identity.snapshot import derive_key

        return derive_key(self._kek_bytes, info)

    def shred(self, subject_id: str) -> bool:
        """Nothing to destroy: each blob carries its own wrapped key, deleted with it."""
        return False

    def encrypt(self, subject_id: str, template_bytes: bytes) -> bytes:
        """Encrypt serialised template bytes for ``subject_id``; returns a self-describing blob.

        Raises TemplateFormatError if ``template_bytes`` is not a serialised template.
        """
        fmt = _template_format_version(template_bytes)
        header = struct.pack(">BBB", BLOB_VERSION, fmt, len(self._key_id_bytes))
        header += self._key_id_bytes
        aad = _aad(header, subject_id)
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        wrapped = self._kek.encrypt(wrap_nonce, data_key, aad)
        ciphertext = AESGCM(data_key).encrypt(nonce, template_bytes, aad)
        return header + wrap_nonce + wrapped + nonce + ciphertext

    def decrypt(self, subject_id: str, blob: bytes) -> bytes:
        """Recover the template bytes of ``subject_id`` from ``blob``.

        Raises TemplateDecryptionError on a malformed blob, another key id, another
        subject, or any altered byte.
        """
        if len(blob) < 3 or blob[0] != BLOB_VERSION:
            raise TemplateDecryptionError("unknown or truncated template blob")
        n = blob[2]
        header, rest = blob[: 3 + n], blob[3 + n :]
        if len(header) != 3 + n or len(rest) < 2 * NONCE_BYTES + _WRAPPED_BYTES + TAG_BYTES:
            raise TemplateDecryptionError("template blob is truncated")
        if header[3:] != self._key_id_bytes:
            raise TemplateDecryptionError(
                f"template was encrypted under another key id than {self.key_id!r}"
            )
        aad = _aad(header, subject_id)
        wrap_nonce, rest = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        wrapped, rest = rest[:_WRAPPED_BYTES], rest[_WRAPPED_BYTES:]
        nonce, ciphertext = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            data_key = self._kek.decrypt(wrap_nonce, wrapped, aad)
            plain = AESGCM(data_key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise TemplateDecryptionError(
                "template failed authentication (wrong subject, wrong key or tampering)"
            ) from None
        if _template_format_version(plain) != header[1]:
            raise TemplateDecryptionError("template format version does not match the blob")
        return plain


def _aad(header: bytes, subject_id: str) -> bytes:
    subject = subject_id.encode("utf-8")
    return _AAD_LABEL + header + struct.pack(">I", len(subject)) + subject


def _template_format_version(template_bytes: bytes) -> int:
    if len(template_bytes) < 5 or template_bytes[:4] != MAGIC:
        raise TemplateFormatError("only serialised palm templates can be encrypted")
    return template_bytes[4]


def key_id_for(kek: bytes) -> str:
    """A stable, non-secret id of a KEK: ``"kek-"`` + 16 hex digits of a SHA-256 of it."""
    return "kek-" + hashlib.sha256(b"storefront-kek-id\x00" + kek).hexdigest()[:16]


def load_or_create_key_file(path: Path, *, create: bool) -> tuple[bytes, str]:
    """Read a 32-byte raw KEK from ``path``; returns ``(kek, key_id)``.

    With ``create=True`` a missing file is created with a random key and mode 0600
    (development use; production keys come from a KMS). Raises KeyFileError if the
    file is missing (and ``create`` is False), readable or writable by group or
    others, or not exactly 32 bytes long.
    """
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist")
        _create_key_file(path)
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is accessible by group or others (mode {mode:o})")
    kek = path.read_bytes()
    if len(kek) != KEY_BYTES:
        raise KeyFileError(f"key file {path} holds {len(kek)} bytes, expected {KEY_BYTES}")
    return kek, key_id_for(kek)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, AESGCM.generate_key(bit_length=256))
    finally:
        os.close(fd)


def is_placeholder_key(kek: bytes) -> bool:
    """True for a key that was typed, not drawn: one repeated byte, or printable ASCII only.

    32 random bytes are all printable with probability (95/256)^32 ~ 1.6e-14.
    """
    return len(set(kek)) <= 1 or all(0x20 <= b < 0x7F for b in kek)


class KeyFileProvider:
    """:class:`identity.keyring.KeyProvider` over local key files (32 raw bytes, mode 0600).

    ``paths[0]`` is the current KEK, the others are retained older KEKs (readable until
    a rotation has re-wrapped every data key). Raises KeyFileError on a missing or
    unsafe file (see :func:`load_or_create_key_file`), and outside ``development`` on a
    placeholder key (:func:`is_placeholder_key`).
    """

    def __init__(self, paths: Sequence[Path], *, development: bool) -> None:
        if not paths:
            raise KeyFileError("at least one key file is needed")
        keys = [load_or_create_key_file(p, create=development and i == 0)
                for i, p in enumerate(paths)]
        for path, (kek, _) in zip(paths, keys, strict=True):
            if not development and is_placeholder_key(kek):
                raise KeyFileError(f"key file {path} holds a placeholder key, not random bytes")
        self._current = keys[0][1], keys[0][0]
        self._by_id = {kid: kek for kek, kid in keys}

    def current(self) -> tuple[str, bytes]:
        """(key id, KEK) of ``paths[0]``."""
        return self._current

    def key_ids(self) -> tuple[str, ...]:
        """Ids of every KEK the files hold, the current one first."""
        return tuple(self._by_id)

    def get(self, key_id: str) -> bytes:
        """The KEK of ``key_id``; raises KeyFileError if none of the files holds it."""
        try:
            return self._by_id[key_id]
        except KeyError:
            raise KeyFileError(f"no key file holds KEK {key_id!r}") from None
