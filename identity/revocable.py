"""Revocable (cancelable) CompCode templates: a keyed, distance-preserving transform.

Cancelable biometrics (Ratha, Connell & Bolle, IBM Systems Journal 2001): store a
keyed transform of the template, so that a leaked template can be revoked by
changing the key. Here the transform of a (3, H, W) code and (H, W) mask is

* a secret permutation of the H*W cells, the same for the three bit planes and the
  mask (so the mask stays one bit per cell), then
* XOR of the 3*H*W code bits with a secret bit string.

Both are bijections on bit positions/values, so the Hamming distance between two
templates transformed under the *same* key equals their distance in the clear, and
the fraction of jointly valid bits is unchanged. The transform does not commute with
cell translations, so a probe is translated in the clear and each translation is then
transformed (:class:`identity.matcher.PreparedProbe` ``transform=``): matching scores
under one key equal the clear scores exactly. Under different keys the permuted,
masked bits are unrelated, so genuine scores fall to the impostor distribution
(benchmarks/revocable_templates.py shows it on Tongji). The key material is expanded
with SHAKE-256 (FIPS 202): the permutation is the argsort of H*W 64-bit words.

Pooled (coarse) codes of :mod:`identity.index` are protected by :meth:`pooled`: a
second permutation, this time of all the pooled bits, and a second XOR string, both
drawn from an independent SHAKE-256 stream of the same key. The index only compares
pooled codes unshifted, by plain Hamming distance, so this bijection preserves every
coarse distance too.

What it is not: encryption. The transform hides which cell a bit belongs to and the
bit values, and makes codes of two keys unlinkable, but an attacker holding many
transformed templates of one key can estimate cell neighbourhoods from bit
correlations (palm codes are spatially smooth). That is why the index lives only in
memory and its on-disk snapshot is also AES-GCM encrypted (:mod:`identity.snapshot`).

The key lives in a key file (:class:`KeyFileTransform`, 32 random bytes, mode 0600,
the same rules as the KEK file of :class:`identity.protection.KeyFileProvider`);
:func:`prepare_next_key` and :func:`promote_next_key` replace it (``storefront
identity rotate-transform``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from identity import params
from identity.errors import KeyFileError
from identity.protection import is_placeholder_key, load_or_create_key_file
from identity.template import BITS_PER_CELL, Template

_LABEL = b"storefront/revocable-compcode/v1\x00"
_POOLED_LABEL = b"storefront/revocable-pooled/v1\x00"
_CHUNK = 8192  # rows per step of the packed transforms (bounds the unpacked temporaries)
Bits = npt.NDArray[np.bool_]
U8 = npt.NDArray[np.uint8]
DEFAULT_GRID = (params.FEATURE_GRID_SIZE, params.FEATURE_GRID_SIZE)


class RevocableTransform:
    """The keyed transform of one key for ``grid`` = (H, W) cells (``key``: >= 16 bytes).

    ``key_id`` ("rk-" + 16 hex digits) names the key without revealing it.
    Raises ValueError on a shorter key.
    """

    def __init__(self, key: bytes, grid: tuple[int, int] = DEFAULT_GRID) -> None:
        if len(key) < 16:
            raise ValueError("a revocable-template key needs at least 16 bytes")
        self.grid = grid
        cells = grid[0] * grid[1]
        stream = hashlib.shake_256(_LABEL + key).digest(8 * cells + BITS_PER_CELL * cells // 8)
        words = np.frombuffer(stream[: 8 * cells], dtype=">u8")
        self._perm = np.argsort(words, kind="stable")
        xor = np.unpackbits(np.frombuffer(stream[8 * cells :], np.uint8))
        self._xor = xor.astype(bool).reshape(BITS_PER_CELL, cells)
        self._key = key
        self._pooled_keys: dict[int, tuple[npt.NDArray[np.intp], U8]] = {}
        self._lock = threading.Lock()
        self.key_id = "rk-" + hashlib.sha256(b"rk-id\x00" + key).hexdigest()[:16]

    def bits(self, code: Bits, mask: Bits) -> tuple[Bits, Bits]:
        """Transform (3, H, W) codes and (H, W) masks (bool), or batches of them with any
        leading axes, e.g. (S, 3, H, W) and (S, H, W); returns the same shapes."""
        h, w = self.grid
        lead = code.shape[:-3]
        flat = np.take(code.reshape(*lead, BITS_PER_CELL, h * w), self._perm, axis=-1)
        cells = np.take(mask.reshape(*mask.shape[:-2], h * w), self._perm, axis=-1)
        return (flat ^ self._xor).reshape(code.shape), cells.reshape(mask.shape)

    def apply(self, template: Template) -> Template:
        """Every rotation variant of ``template`` transformed (a reference for matching;
        a probe's in-memory refinement variants are left out, as in stored templates).

        Raises ValueError on another grid.
        """
        if template.grid != self.grid:
            raise ValueError(f"template grid {template.grid} != transform grid {self.grid}")
        pairs = [self.bits(template.code_bits(r), template.mask_bits(r))
                 for r in range(template.rotation_variants)]
        return Template.from_bits(np.stack([c for c, _ in pairs]), np.stack([m for _, m in pairs]))

    def codes(self, codes: U8) -> U8:
        """Transform packed variant-0 codes: (n, code bytes) uint8 (layout of
        :mod:`identity.template`) -> the same shape, padding bits zero."""
        cells = self.grid[0] * self.grid[1]
        xor = self._xor.astype(np.uint8)

        def step(part: U8) -> U8:
            bits = _unpack_rows(part, BITS_PER_CELL * cells)
            moved = np.take(bits.reshape(len(part), BITS_PER_CELL, cells), self._perm, axis=2)
            return _pack_rows((moved ^ xor).reshape(len(part), -1))

        return _chunked(step, codes)

    def masks(self, masks: U8) -> U8:
        """Permute packed cell masks: (n, mask bytes) uint8 -> the same shape."""
        cells = self.grid[0] * self.grid[1]

        def step(part: U8) -> U8:
            return _pack_rows(np.take(_unpack_rows(part, cells), self._perm, axis=1))

        return _chunked(step, masks)

    def pooled(self, codes: U8, nbits: int) -> U8:
        """Protect packed pooled codes of ``nbits`` bits each: (n, ceil(nbits / 8)) uint8 ->
        the same shape (an independent keyed permutation of the bits, then XOR)."""
        perm, xor = self._pooled_key(nbits)

        def step(part: U8) -> U8:
            return _pack_rows(np.take(_unpack_rows(part, nbits), perm, axis=1) ^ xor)

        return _chunked(step, codes)

    def _pooled_key(self, nbits: int) -> tuple[npt.NDArray[np.intp], U8]:
        with self._lock:
            found = self._pooled_keys.get(nbits)
            if found is None:
                seed = _POOLED_LABEL + nbits.to_bytes(4, "big") + self._key
                stream = hashlib.shake_256(seed).digest(8 * nbits + (nbits + 7) // 8)
                perm = np.argsort(np.frombuffer(stream[: 8 * nbits], dtype=">u8"), kind="stable")
                xor = np.unpackbits(np.frombuffer(stream[8 * nbits :], np.uint8), count=nbits)
                found = self._pooled_keys[nbits] = (perm, xor)
            return found


def _unpack_rows(rows: U8, nbits: int) -> U8:
    """(n, bytes) packed rows -> (n, nbits) uint8 bits (unpacking the flat buffer is
    several times faster than ``unpackbits(axis=1)``)."""
    bits = np.unpackbits(np.ascontiguousarray(rows).ravel()).reshape(len(rows), -1)
    return bits if bits.shape[1] == nbits else bits[:, :nbits]


def _pack_rows(bits: U8) -> U8:
    """(n, nbits) bits -> (n, ceil(nbits / 8)) packed rows, padding bits zero."""
    if bits.shape[1] % 8:
        return np.packbits(bits, axis=1)
    return np.packbits(np.ascontiguousarray(bits).ravel()).reshape(len(bits), -1)


def _chunked(step: Callable[[U8], U8], rows: U8) -> U8:
    """Apply ``step`` (a function of a (k, bytes) uint8 block) to ``rows`` in blocks."""
    if len(rows) <= _CHUNK:
        return np.ascontiguousarray(step(rows))
    return np.concatenate([step(rows[i : i + _CHUNK]) for i in range(0, len(rows), _CHUNK)])


class TransformSource(Protocol):
    """Where :class:`identity.service.IdentityService` gets the current transform."""

    def current(self) -> RevocableTransform:
        """The transform new index codes are made under."""
        ...


class FixedTransform:
    """A :class:`TransformSource` of one transform that never changes."""

    def __init__(self, transform: RevocableTransform) -> None:
        self._transform = transform

    def current(self) -> RevocableTransform:
        """The transform given at construction."""
        return self._transform


def load_key(path: Path, *, development: bool, create: bool | None = None) -> bytes:
    """Read the 32-byte revocable key of ``path``; a missing file is created (random,
    mode 0600) when ``create``, which defaults to ``development``.

    Raises KeyFileError like the KEK file (:func:`identity.protection.load_or_create_key_file`):
    missing outside development, unsafe mode, wrong length; and outside development
    on a placeholder key (:func:`identity.protection.is_placeholder_key`).
    """
    key, _ = load_or_create_key_file(path, create=development if create is None else create)
    if not development and is_placeholder_key(key):
        raise KeyFileError(f"key file {path} holds a placeholder key, not random bytes")
    return key


class KeyFileTransform:
    """A :class:`TransformSource` over a key file, re-read when the file's inode, size or
    modification time changes (one ``stat`` per call), so a running service follows
    ``storefront identity rotate-transform``. A file that disappears keeps the last key.

    Raises KeyFileError at construction (see :func:`load_key`), and from
    :meth:`current` when a replaced file is unsafe.
    """

    def __init__(self, path: Path, *, development: bool,
                 grid: tuple[int, int] = DEFAULT_GRID) -> None:
        self.path, self._development, self._grid = path, development, grid
        self._lock = threading.Lock()
        self._stamp = self._signature()  # before reading: a change meanwhile is seen later
        self._transform = RevocableTransform(load_key(path, development=development), grid)

    def _signature(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> RevocableTransform:
        """The transform of the key file as it is now."""
        with self._lock:
            stamp = self._signature()
            if stamp != self._stamp and stamp != (0, 0, 0):
                key = load_key(self.path, development=self._development, create=False)
                self._transform = RevocableTransform(key, self._grid)
                self._stamp = stamp
            return self._transform


def next_key_file(path: Path) -> Path:
    """``<path>.next``: where a new key waits until :func:`promote_next_key`."""
    return path.with_name(path.name + ".next")


def prepare_next_key(path: Path, grid: tuple[int, int] = DEFAULT_GRID) -> RevocableTransform:
    """Write a new random key to ``<path>.next`` (mode 0600; a leftover one from an
    interrupted rotation is replaced: it never made a stored code) and return its
    transform. Raises KeyFileError or OSError when it cannot be written."""
    nxt = next_key_file(path)
    nxt.unlink(missing_ok=True)
    key, _ = load_or_create_key_file(nxt, create=True)
    return RevocableTransform(key, grid)


def promote_next_key(path: Path) -> None:
    """Make ``<path>.next`` the key file (atomic rename; the old key is gone).

    Raises FileNotFoundError when there is no prepared key.
    """
    os.replace(next_key_file(path), path)
