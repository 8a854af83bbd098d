"""Immutable palm templates and their versioned binary format (numpy only).

Format version 2 (all integers big-endian)::

    offset size  field
    0      4     magic  b"SFPT"
    4      1     format version (2)
    5      1     bits per cell (3, CompCode)
    6      1     variants R (1..MAX_VARIANTS): codes of the ROI at R rotations
    7      2     grid height H (cells)
    9      2     grid width W (cells)
    11     4     code length in bytes  = R * ceil(3 * H * W / 8)
    15     4     mask length in bytes  = R * ceil(H * W / 8)
    19     ...   code bytes, then mask bytes; nothing after

Variant ``r`` of the code is ``numpy.packbits`` of a ``(3, H, W)`` bool array (bit
plane, row, column), each variant padded to whole bytes; variant ``r`` of the mask is
``packbits`` of an ``(H, W)`` bool array (True = valid). Variant 0 is the unrotated
ROI: it is what a *reference* contributes to a comparison and what the FAISS index
stores; the other variants are used when the template is the *probe* (see
:mod:`identity.matcher`). Unused padding bits of each variant's last byte must be zero.

Version 1 (no variants field, one code) is refused: its codes came from another
coder (wavelength 5 px, no rotations) and cannot be compared with version 2 codes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from identity.errors import TemplateFormatError

MAGIC = b"SFPT"
FORMAT_VERSION = 2
BITS_PER_CELL = 3
MAX_GRID_SIDE = 1024
MAX_VARIANTS = 16
_HEADER = struct.Struct(">4sBBBHHII")
_PREFIX = struct.Struct(">4sB")


def code_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of one packed code variant for ``grid`` = (H, W) cells."""
    return (BITS_PER_CELL * grid[0] * grid[1] + 7) // 8


def mask_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of one packed mask variant for ``grid`` = (H, W) cells."""
    return (grid[0] * grid[1] + 7) // 8


@dataclass(frozen=True)
class Template:
    """A palm template: packed CompCode bits and validity masks of ``variants`` rotations.

    ``grid`` is (H, W) in cells; ``code`` holds ``variants * code_nbytes(grid)`` bytes
    and ``mask`` holds ``variants * mask_nbytes(grid)`` bytes (layout in the module
    docstring). Raises :class:`TemplateFormatError` when the parts are inconsistent.
    """

    grid: tuple[int, int]
    code: bytes = field(repr=False)
    mask: bytes = field(repr=False)
    variants: int = 1

    def __post_init__(self) -> None:
        h, w = self.grid
        if not (0 < h <= MAX_GRID_SIDE and 0 < w <= MAX_GRID_SIDE):
            raise TemplateFormatError(f"grid {self.grid} is out of range")
        if not 0 < self.variants <= MAX_VARIANTS:
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
        for r in range(self.variants):
            _check_padding(self.code[r * n_code : (r + 1) * n_code], BITS_PER_CELL * h * w, "code")
            _check_padding(self.mask[r * n_mask : (r + 1) * n_mask], h * w, "mask")

    @property
    def code_bit_count(self) -> int:
        """Number of code bits of one variant (3 * H * W)."""
        return BITS_PER_CELL * self.grid[0] * self.grid[1]

    @property
    def reference_code(self) -> bytes:
        """The packed code of variant 0 (the unrotated ROI), as FAISS indexes it."""
        return self.code[: code_nbytes(self.grid)]

    def code_bits(self, variant: int = 0) -> npt.NDArray[np.bool_]:
        """The orientation code of ``variant`` as a ``(3, H, W)`` bool array."""
        h, w = self.grid
        n = code_nbytes(self.grid)
        raw = np.frombuffer(self.code[self._check(variant) * n :][:n], dtype=np.uint8)
        bits = np.unpackbits(raw, count=self.code_bit_count).astype(bool)
        return bits.reshape(BITS_PER_CELL, h, w)

    def mask_bits(self, variant: int = 0) -> npt.NDArray[np.bool_]:
        """The validity mask of ``variant`` as an ``(H, W)`` bool array (True = valid)."""
        h, w = self.grid
        n = mask_nbytes(self.grid)
        raw = np.frombuffer(self.mask[self._check(variant) * n :][:n], dtype=np.uint8)
        return np.unpackbits(raw, count=h * w).astype(bool).reshape(h, w)

    def _check(self, variant: int) -> int:
        if not 0 <= variant < self.variants:
            raise IndexError(f"variant {variant} of a template with {self.variants}")
        return variant

    @classmethod
    def from_bits(cls, code: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> Template:
        """Pack codes and masks: ``(3, H, W)`` + ``(H, W)``, or ``(R, 3, H, W)`` + ``(R, H, W)``."""
        if code.ndim == 3:
            code, mask = code[None], mask[None]
        if code.ndim != 4 or code.shape[1] != BITS_PER_CELL or mask.shape != (
            code.shape[0], *code.shape[2:]
        ):
            raise TemplateFormatError(f"bad bit shapes: code {code.shape}, mask {mask.shape}")
        grid = (int(code.shape[2]), int(code.shape[3]))
        packed_code = b"".join(np.packbits(c.astype(bool).ravel()).tobytes() for c in code)
        packed_mask = b"".join(np.packbits(m.astype(bool).ravel()).tobytes() for m in mask)
        return cls(grid, packed_code, packed_mask, int(code.shape[0]))

    def to_bytes(self) -> bytes:
        """Serialise to format version :data:`FORMAT_VERSION`."""
        h, w = self.grid
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, BITS_PER_CELL, self.variants, h, w,
            len(self.code), len(self.mask),
        )
        return header + self.code + self.mask

    @classmethod
    def from_bytes(cls, data: bytes) -> Template:
        """Parse and validate serialised bytes.

        Raises :class:`TemplateFormatError` on truncation, wrong magic, unknown or
        retired version, unsupported bits per cell, length mismatch or trailing bytes.
        """
        if len(data) < _PREFIX.size:
            raise TemplateFormatError(f"template truncated: {len(data)} < {_HEADER.size} bytes")
        magic, version = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise TemplateFormatError("not a palm template (wrong magic bytes)")
        if version == 1:
            raise TemplateFormatError(
                "template format version 1 (the retired CompCode coder) is no longer"
                " supported; the palm must be enrolled again"
            )
        if version != FORMAT_VERSION:
            raise TemplateFormatError(f"unknown template format version {version}")
        if len(data) < _HEADER.size:
            raise TemplateFormatError(f"template truncated: {len(data)} < {_HEADER.size} bytes")
        _, _, bpc, variants, h, w, n_code, n_mask = _HEADER.unpack_from(data)
        if bpc != BITS_PER_CELL:
            raise TemplateFormatError(f"unsupported bits per cell {bpc}")
        expected = _HEADER.size + n_code + n_mask
        if len(data) < expected:
            raise TemplateFormatError(f"template truncated: {len(data)} < {expected} bytes")
        if len(data) > expected:
            raise TemplateFormatError(f"{len(data) - expected} unexpected trailing bytes")
        body = data[_HEADER.size :]
        return cls((h, w), bytes(body[:n_code]), bytes(body[n_code:]), variants)


def _check_padding(packed: bytes, n_bits: int, what: str) -> None:
    spare = len(packed) * 8 - n_bits
    if spare and packed[-1] & ((1 << spare) - 1):
        raise TemplateFormatError(f"{what} padding bits are not zero")
