"""Immutable palm templates and their versioned binary format (numpy only).

Format version 3 (all integers big-endian)::

    offset size  field
    0      4     magic  b"SFPT"
    4      1     format version (3)
    5      1     bits per cell (3: CompCode, and 3 OrdinalCode orientations)
    6      1     variants R (1..MAX_VARIANTS): codes of the ROI at R rotations (a
                 probe's half-cell, sheared and scaled refinement grids,
                 ``Template.refine_offsets``, live in memory only and are never
                 written: :meth:`Template.to_bytes` writes the rotations)
    7      2     grid height H (cells)
    9      2     grid width W (cells)
    11     4     code length in bytes     = R * ceil(3 * H * W / 8)
    15     4     mask length in bytes     = R * ceil(H * W / 8)
    19     4     ordinal length in bytes  = the code length
    23     ...   code bytes, then mask bytes, then ordinal bytes; nothing after

Variant ``r`` of the code (CompCode, :mod:`identity.features`) is ``numpy.packbits`` of a
``(3, H, W)`` bool array (bit plane, row, column), each variant padded to whole bytes;
variant ``r`` of the mask is ``packbits`` of an ``(H, W)`` bool array (True = valid),
shared by both codes; variant ``r`` of the ordinal code (OrdinalCode,
:mod:`identity.ordinal`) has exactly the code's layout (orientation, row, column). Variant
0 is the unrotated ROI: it is what a *reference* contributes to a comparison and what the
FAISS index stores; the other variants are used when the template is the *probe* (see
:mod:`identity.matcher`). A fresh capture's template also carries the refinement variants
of each rotation (the in-memory field ``refine_offsets``); a stored template keeps only its
rotations (:meth:`Template.rotations_only`), since it is only ever a reference. Unused padding
bits of each variant's last byte must be zero.

In memory a template may lack the ordinal code (``ordinal == b""``: a CompCode-only
template, as :func:`identity.matcher.translate` or the index's internals make); such a
template cannot be serialised, since a stored template must carry both codes.

Refused versions: version 1 (no variants field, one code) came from another coder
(wavelength 5 px, no rotations); version 2 (the version 3 header without the ordinal
length, code then mask) has no ordinal code, so it cannot be scored with the fused
distance. Both palms must be enrolled again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from identity.errors import RetiredTemplateError, TemplateFormatError

MAGIC = b"SFPT"
FORMAT_VERSION = 3
BITS_PER_CELL = 3
MAX_GRID_SIDE = 1024
MAX_VARIANTS = 16
# A probe in memory: its rotations and their refinement variants (the header's byte).
MAX_PROBE_VARIANTS = 255
_HEADER = struct.Struct(">4sBBBHHIII")
_PREFIX = struct.Struct(">4sB")


def code_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of one packed code variant for ``grid`` = (H, W) cells."""
    return (BITS_PER_CELL * grid[0] * grid[1] + 7) // 8


def mask_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of one packed mask variant for ``grid`` = (H, W) cells."""
    return (grid[0] * grid[1] + 7) // 8


@dataclass(frozen=True)
class Template:
    """A palm template: packed CompCode bits, validity masks and OrdinalCode bits of
    ``variants`` rotations.

    ``grid`` is (H, W) in cells; ``code`` holds ``variants * code_nbytes(grid)`` bytes,
    ``mask`` holds ``variants * mask_nbytes(grid)`` bytes and ``ordinal`` holds as many
    bytes as ``code`` or none (a CompCode-only in-memory template; layout in the module
    docstring). Raises :class:`TemplateFormatError` when the parts are inconsistent or a
    padding bit is set.
    """

    grid: tuple[int, int]
    code: bytes = field(repr=False)
    mask: bytes = field(repr=False)
    variants: int = 1
    ordinal: bytes = field(default=b"", repr=False)
    # In memory only (not serialised, not compared): refinement grids per rotation. The
    # first variants // (1 + refine_offsets) variants are rotations; variant R + r * O + o
    # is rotation r on the cell grid moved by offset o, sheared or scaled (identity.features).
    refine_offsets: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        h, w = self.grid
        if not (0 < h <= MAX_GRID_SIDE and 0 < w <= MAX_GRID_SIDE):
            raise TemplateFormatError(f"grid {self.grid} is out of range")
        if self.refine_offsets < 0 or self.variants % (1 + self.refine_offsets):
            raise TemplateFormatError(f"{self.variants} variants do not hold rotations with"
                                      f" {self.refine_offsets} refinement grids each")
        if not 0 < self.rotation_variants <= MAX_VARIANTS or self.variants > MAX_PROBE_VARIANTS:
            raise TemplateFormatError(f"{self.variants} variants is out of range")
        n_code, n_mask = code_nbytes(self.grid), mask_nbytes(self.grid)
        if len(self.code) != self.variants * n_code:
            raise TemplateFormatError(
                f"code has {len(self.code)} bytes, grid {self.grid} x {self.variants} variants"
                f" needs {self.variants * n_code}"
            )
        if len(self.mask) != self.variants * n_mask:
            raise TemplateFormatError(
                f"mask has {len(self.mask)} bytes, grid {self.grid} x {self.variants} variants"
                f" needs {self.variants * n_mask}"
            )
        if self.ordinal and len(self.ordinal) != len(self.code):
            raise TemplateFormatError(
                f"ordinal code has {len(self.ordinal)} bytes, the code has {len(self.code)}"
            )
        for r in range(self.variants):
            _check_padding(self.code[r * n_code : (r + 1) * n_code], BITS_PER_CELL * h * w, "code")
            _check_padding(self.mask[r * n_mask : (r + 1) * n_mask], h * w, "mask")
            if self.ordinal:
                _check_padding(self.ordinal[r * n_code : (r + 1) * n_code],
                               BITS_PER_CELL * h * w, "ordinal code")

    @property
    def code_bit_count(self) -> int:
        """Number of code bits of one variant (3 * H * W)."""
        return BITS_PER_CELL * self.grid[0] * self.grid[1]

    @property
    def has_ordinal(self) -> bool:
        """True when the template carries the OrdinalCode (every stored template does)."""
        return bool(self.ordinal)

    @property
    def rotation_variants(self) -> int:
        """How many of the variants are rotations (the first ones): ``variants // (1 +
        refine_offsets)``."""
        return self.variants // (1 + self.refine_offsets)

    @property
    def refined(self) -> bool:
        """True when the template carries refinement variants (a fresh capture's)."""
        return self.refine_offsets > 0

    def rotations_only(self) -> Template:
        """This template without its refinement variants (itself if it has none): what is
        stored, since a stored template is only ever a reference (variant 0)."""
        n = self.rotation_variants
        if not self.refined:
            return self
        n_code, n_mask = n * code_nbytes(self.grid), n * mask_nbytes(self.grid)
        return Template(self.grid, self.code[:n_code], self.mask[:n_mask], n,
                        self.ordinal[:n_code] if self.ordinal else b"")

    @property
    def reference_code(self) -> bytes:
        """The packed code of variant 0 (the unrotated ROI), as FAISS indexes it."""
        return self.code[: code_nbytes(self.grid)]

    def code_bits(self, variant: int = 0) -> npt.NDArray[np.bool_]:
        """The CompCode orientation code of ``variant`` as a ``(3, H, W)`` bool array.

        Raises IndexError for a variant outside ``0..variants - 1``.
        """
        return self._unpack_code(self.code, variant)

    def ordinal_bits(self, variant: int = 0) -> npt.NDArray[np.bool_]:
        """The OrdinalCode of ``variant`` as a ``(3, H, W)`` bool array (orientation, row,
        column).

        Raises :class:`TemplateFormatError` when the template has no ordinal code and
        IndexError for a variant outside ``0..variants - 1``.
        """
        if not self.ordinal:
            raise TemplateFormatError("the template has no ordinal code (CompCode only)")
        return self._unpack_code(self.ordinal, variant)

    def _unpack_code(self, packed: bytes, variant: int) -> npt.NDArray[np.bool_]:
        h, w = self.grid
        n = code_nbytes(self.grid)
        raw = np.frombuffer(packed[self._check(variant) * n :][:n], dtype=np.uint8)
        bits = np.unpackbits(raw, count=self.code_bit_count).astype(bool)
        return bits.reshape(BITS_PER_CELL, h, w)

    def mask_bits(self, variant: int = 0) -> npt.NDArray[np.bool_]:
        """The validity mask of ``variant`` as an ``(H, W)`` bool array (True = valid).

        Raises IndexError for a variant outside ``0..variants - 1``.
        """
        h, w = self.grid
        n = mask_nbytes(self.grid)
        raw = np.frombuffer(self.mask[self._check(variant) * n :][:n], dtype=np.uint8)
        return np.unpackbits(raw, count=h * w).astype(bool).reshape(h, w)

    def _check(self, variant: int) -> int:
        if not 0 <= variant < self.variants:
            raise IndexError(f"variant {variant} of a template with {self.variants}")
        return variant

    @classmethod
    def from_bits(
        cls,
        code: npt.NDArray[np.bool_],
        mask: npt.NDArray[np.bool_],
        ordinal: npt.NDArray[np.bool_] | None = None,
        refine_offsets: int = 0,
    ) -> Template:
        """Pack codes and masks: ``(3, H, W)`` + ``(H, W)``, or ``(R, 3, H, W)`` + ``(R, H, W)``.

        ``ordinal`` (bool, the shape of ``code``) is the OrdinalCode; ``None`` makes a
        CompCode-only template. ``refine_offsets``: refinement grids per rotation (see the
        field). Raises :class:`TemplateFormatError` on inconsistent shapes.
        """
        if code.ndim == 3:
            code, mask = code[None], mask[None]
            if ordinal is not None:
                ordinal = ordinal[None]
        if code.ndim != 4 or code.shape[1] != BITS_PER_CELL or mask.shape != (
            code.shape[0], *code.shape[2:]
        ):
            raise TemplateFormatError(f"bad bit shapes: code {code.shape}, mask {mask.shape}")
        if ordinal is not None and ordinal.shape != code.shape:
            raise TemplateFormatError(
                f"bad bit shapes: ordinal {ordinal.shape}, code {code.shape}"
            )
        grid = (int(code.shape[2]), int(code.shape[3]))
        packed_code = _pack_variants(code)
        packed_mask = _pack_variants(mask)
        packed_ord = b"" if ordinal is None else _pack_variants(ordinal)
        return cls(grid, packed_code, packed_mask, int(code.shape[0]), packed_ord,
                   refine_offsets)

    def to_bytes(self) -> bytes:
        """Serialise to format version :data:`FORMAT_VERSION`: the rotation variants only
        (:meth:`rotations_only`; refinement variants live in memory, on probes).

        Raises :class:`TemplateFormatError` for a template without an ordinal code: a
        stored template must carry both codes.
        """
        if not self.ordinal:
            raise TemplateFormatError(
                "a template without an ordinal code cannot be stored (CompCode only)"
            )
        stored = self.rotations_only()
        h, w = stored.grid
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, BITS_PER_CELL, stored.variants, h, w,
            len(stored.code), len(stored.mask), len(stored.ordinal),
        )
        return header + stored.code + stored.mask + stored.ordinal

    @classmethod
    def from_bytes(cls, data: bytes) -> Template:
        """Parse and validate serialised bytes (format version 3 only).

        Raises :class:`TemplateFormatError` on truncation, wrong magic, unknown or
        retired version (1 and 2: :class:`RetiredTemplateError`, a subclass; the palm must
        be enrolled again), unsupported bits per
        cell, an ordinal length other than the code length, lengths inconsistent with the
        grid, non-zero padding bits or trailing bytes.
        """
        if len(data) < _PREFIX.size:
            raise TemplateFormatError(f"template truncated: {len(data)} < {_HEADER.size} bytes")
        magic, version = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise TemplateFormatError("not a palm template (wrong magic bytes)")
        if version == 1:
            raise RetiredTemplateError(
                "template format version 1 (the retired CompCode coder) is no longer"
                " supported; the palm must be enrolled again"
            )
        if version == 2:
            raise RetiredTemplateError(
                "template format version 2 has no ordinal code (CompCode only), which the"
                " fused CompCode + OrdinalCode matcher needs; the palm must be enrolled again"
            )
        if version != FORMAT_VERSION:
            raise TemplateFormatError(f"unknown template format version {version}")
        if len(data) < _HEADER.size:
            raise TemplateFormatError(f"template truncated: {len(data)} < {_HEADER.size} bytes")
        _, _, bpc, variants, h, w, n_code, n_mask, n_ord = _HEADER.unpack_from(data)
        if bpc != BITS_PER_CELL:
            raise TemplateFormatError(f"unsupported bits per cell {bpc}")
        if n_ord != n_code:
            raise TemplateFormatError(
                f"ordinal length {n_ord} bytes differs from the code length {n_code} bytes"
            )
        expected = _HEADER.size + n_code + n_mask + n_ord
        if len(data) < expected:
            raise TemplateFormatError(f"template truncated: {len(data)} < {expected} bytes")
        if len(data) > expected:
            raise TemplateFormatError(f"{len(data) - expected} unexpected trailing bytes")
        body = data[_HEADER.size :]
        # n_ord == n_code and the constructor refuses an empty code, so the ordinal is present
        return cls((h, w), bytes(body[:n_code]), bytes(body[n_code : n_code + n_mask]),
                   variants, bytes(body[n_code + n_mask :]))


def _pack_variants(bits: npt.NDArray[np.bool_]) -> bytes:
    """``numpy.packbits`` of each variant (first axis) flattened, each padded to whole bytes."""
    return b"".join(np.packbits(v.astype(bool).ravel()).tobytes() for v in bits)


def _check_padding(packed: bytes, n_bits: int, what: str) -> None:
    spare = len(packed) * 8 - n_bits
    if spare and packed[-1] & ((1 << spare) - 1):
        raise TemplateFormatError(f"{what} padding bits are not zero")
