"""Encrypted, checksummed, versioned on-disk snapshot of a :class:`identity.index.PalmIndex`.

A restart loads the snapshot (one AES-GCM decryption, not one per template) and then
replays the repository's change log from the snapshot's cursor. Any problem - missing
file, unknown version, checksum or authentication failure, another KEK, another
revocable transform key, another grid, a cursor ahead of the database - raises
:class:`SnapshotError`, and the caller rebuilds from the database (the system of record).

The rows are the index's *protected* rows (:class:`identity.index.IndexRows`): codes
and masks under the revocable transform, and protected pooled codes; never a clear
code. A snapshot made under another transform key (after ``storefront identity
rotate-transform``) is stale: its codes would match nothing.

File format version 2 (integers big-endian)::

    4 bytes  magic b"SFIX"
    1 byte   format version (2)
    1 byte   key id length n, then n bytes key id (UTF-8) of the KEK
    1 byte   transform id length m, then m bytes id (UTF-8) of the revocable key
    8 bytes  change-log cursor
    32 bytes SHA-256 of everything after this field (nonce + ciphertext)
    12 bytes nonce, then AES-256-GCM ciphertext + 16-byte tag (NIST SP 800-38D)

The AES key is HKDF-SHA256 (RFC 5869) of the KEK with ``SNAPSHOT_INFO`` (callers
pass the derived ``key``, see :meth:`identity.protection.TemplateCipher.derive_key`); the
associated data is every header byte, so the cursor and key ids cannot be altered. The
plaintext is: grid H, W (2 x uint16), row count n (uint64), pooled code bytes p per
row (uint16), then n x code bytes, n x mask bytes (variant 0, layout of
:mod:`identity.template`), n x p pooled bytes, then the template ids and the subject
ids, each as UTF-8 joined by newlines (ids never contain one). Version 1 files (clear
codes, no transform) are refused, so an upgrade rebuilds them away.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.errors import IdentityError
from identity.template import code_nbytes, mask_nbytes

MAGIC = b"SFIX"
VERSION = 2
SNAPSHOT_INFO = b"storefront/index-snapshot/v1"
_BODY = struct.Struct(">HHQH")


class SnapshotError(IdentityError):
    """The snapshot is missing, stale, corrupt, of another version or another key."""

    code = "snapshot_unusable"


@dataclass(frozen=True)
class SnapshotRows:
    """Index rows: ``codes`` (n, code bytes), ``masks`` (n, mask bytes) and ``pooled``
    (n, p bytes; None: p = 0) uint8, made under the revocable key ``transform_id``
    (see :class:`identity.index.IndexRows`)."""

    grid: tuple[int, int]
    template_ids: list[str]
    subject_ids: list[str]
    codes: npt.NDArray[np.uint8]
    masks: npt.NDArray[np.uint8]
    pooled: npt.NDArray[np.uint8] | None = None
    transform_id: str = ""


def derive_key(kek: bytes, info: bytes = SNAPSHOT_INFO) -> bytes:
    """A 32-byte key derived from the KEK for ``info`` (HKDF-SHA256, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(kek)


def _header(key_id: str, transform_id: str, cursor: int) -> bytes:
    kid, tid = key_id.encode("utf-8"), transform_id.encode("utf-8")
    return (MAGIC + struct.pack(">BB", VERSION, len(kid)) + kid + struct.pack(">B", len(tid))
            + tid + struct.pack(">Q", cursor))


def write_snapshot(path: Path, rows: SnapshotRows, *, key: bytes, key_id: str,
                   cursor: int) -> int:
    """Write ``rows`` atomically (temporary file + rename, mode 0600); returns the bytes.

    Raises OSError when the file cannot be written.
    """
    n = len(rows.template_ids)
    pooled = rows.pooled if rows.pooled is not None else np.zeros((n, 0), np.uint8)
    ids = "\n".join(rows.template_ids).encode("utf-8"), "\n".join(rows.subject_ids).encode()
    plain = b"".join([_BODY.pack(*rows.grid, n, pooled.shape[1]), rows.codes.tobytes(),
                      rows.masks.tobytes(), pooled.tobytes(), struct.pack(">Q", len(ids[0])),
                      ids[0], ids[1]])
    header = _header(key_id, rows.transform_id, cursor)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, plain, header)
    data = header + hashlib.sha256(sealed).digest() + sealed
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return len(data)


def read_snapshot(path: Path, *, key: bytes, key_id: str,
                  transform_id: str | None = None) -> tuple[SnapshotRows, int]:
    """Read and verify a snapshot; returns ``(rows, cursor)``.

    ``transform_id``: the revocable key the caller's index uses (None: not checked).
    Raises SnapshotError (see module).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"no readable snapshot at {path}: {exc.strerror or exc}") from None
    if len(data) < 7 or data[:4] != MAGIC or data[4] != VERSION:
        raise SnapshotError("not a snapshot of a known version")
    kid_end = 6 + data[5]
    tid_end = kid_end + 1 + (data[kid_end] if len(data) > kid_end else 0)
    end = tid_end + 8
    header, digest, sealed = data[:end], data[end : end + 32], data[end + 32 :]
    if len(sealed) < 28 or data[6:kid_end] != key_id.encode("utf-8"):
        raise SnapshotError("snapshot is truncated or made under another KEK")
    stored_transform = data[kid_end + 1 : tid_end].decode("utf-8", "replace")
    if transform_id is not None and stored_transform != transform_id:
        raise SnapshotError(f"snapshot codes were made under revocable key "
                            f"{stored_transform!r}, not the current {transform_id!r}")
    if hashlib.sha256(sealed).digest() != digest:
        raise SnapshotError("snapshot checksum mismatch (corrupt file)")
    try:
        plain = AESGCM(key).decrypt(sealed[:12], sealed[12:], header)
    except InvalidTag:
        raise SnapshotError("snapshot failed authentication") from None
    return _parse(plain, stored_transform), int(struct.unpack(">Q", header[-8:])[0])


def _parse(plain: bytes, transform_id: str) -> SnapshotRows:
    h, w, n, p = _BODY.unpack_from(plain)
    nc, nm = code_nbytes((h, w)), mask_nbytes((h, w))
    at = _BODY.size
    codes = np.frombuffer(plain, np.uint8, n * nc, at).reshape(n, nc)
    masks = np.frombuffer(plain, np.uint8, n * nm, at + n * nc).reshape(n, nm)
    pooled = np.frombuffer(plain, np.uint8, n * p, at + n * (nc + nm)).reshape(n, p)
    at += n * (nc + nm + p)
    (tid_len,) = struct.unpack_from(">Q", plain, at)
    tids = plain[at + 8 : at + 8 + tid_len].decode("utf-8").split("\n") if n else []
    sids = plain[at + 8 + tid_len :].decode("utf-8").split("\n") if n else []
    if len(tids) != n or len(sids) != n:
        raise SnapshotError("snapshot id lists do not match its row count")
    return SnapshotRows((h, w), tids, sids, codes, masks, pooled if p else None, transform_id)
