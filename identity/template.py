"""Immutable palm templates and their versioned binary format (numpy only).

Format version 1 (all integers big-endian)::

    offset size  field
    0      4     magic  b"SFPT"
    4      1     format version (1)
    5      1     bits per cell (3, CompCode)
    6      2     grid height H (cells)
    8      2     grid width W (cells)
    10     4     code length in bytes  = ceil(3 * H * W / 8)
    14     4     mask length in bytes  = ceil(H * W / 8)
    18     ...   code bytes, then mask bytes; nothing after

Code bytes are ``numpy.packbits`` of a ``(3, H, W)`` bool array (bit plane, row,
column); mask bytes are ``packbits`` of an ``(H, W)`` bool array (True = valid).
Unused padding bits of the last byte must be zero.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from identity.errors import TemplateFormatError

MAGIC = b"SFPT"
FORMAT_VERSION = 1
BITS_PER_CELL = 3
MAX_GRID_SIDE = 1024
_HEADER = struct.Struct(">4sBBHHII")


def code_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of a packed code for ``grid`` = (H, W) cells."""
    return (BITS_PER_CELL * grid[0] * grid[1] + 7) // 8


def mask_nbytes(grid: tuple[int, int]) -> int:
    """Bytes of a packed mask for ``grid`` = (H, W) cells."""
    return (grid[0] * grid[1] + 7) // 8


@dataclass(frozen=True)
class Template:
    """A palm template: packed CompCode bits, packed validity mask, grid shape.

    ``grid`` is (H, W) in cells; ``code`` holds ``code_nbytes(grid)`` bytes and
    ``mask`` holds ``mask_nbytes(grid)`` bytes (layout in the module docstring).
    Raises :class:`TemplateFormatError` when the parts are inconsistent.
    """

    grid: tuple[int, int]
    code: bytes = field(repr=False)
    mask: bytes = field(repr=False)

    def __post_init__(self) -> None:
        h, w = self.grid
        if not (0 < h <= MAX_GRID_SIDE and 0 < w <= MAX_GRID_SIDE):
            raise TemplateFormatError(f"grid {self.grid} is out of range")
        if len(self.code) != code_nbytes(self.grid):
            raise TemplateFormatError(
                f"code has {len(self.code)} bytes, grid {self.grid} needs {code_nbytes(self.grid)}"
            )
        if len(self.mask) != mask_nbytes(self.grid):
            raise TemplateFormatError(
                f"mask has {len(self.mask)} bytes, grid {self.grid} needs {mask_nbytes(self.grid)}"
            )
        _check_padding(self.code, BITS_PER_CELL * h * w, "code")
        _check_padding(self.mask, h * w, "mask")

    @property
    def code_bit_count(self) -> int:
        """Number of code bits (3 * H * W)."""
        return BITS_PER_CELL * self.grid[0] * self.grid[1]

    def code_bits(self) -> npt.NDArray[np.bool_]:
        """The orientation code as a ``(3, H, W)`` bool array."""
        h, w = self.grid
        raw = np.frombuffer(self.code, dtype=np.uint8)
        bits = np.unpackbits(raw, count=self.code_bit_count).astype(bool)
        return bits.reshape(BITS_PER_CELL, h, w)

    def mask_bits(self) -> npt.NDArray[np.bool_]:
        """The validity mask as an ``(H, W)`` bool array (True = valid)."""
        h, w = self.grid
        raw = np.frombuffer(self.mask, dtype=np.uint8)
        return np.unpackbits(raw, count=h * w).astype(bool).reshape(h, w)

    @classmethod
    def from_bits(cls, code: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> Template:
        """Pack a ``(3, H, W)`` bool code and an ``(H, W)`` bool mask into a template."""
        if code.ndim != 3 or code.shape[0] != BITS_PER_CELL or mask.shape != code.shape[1:]:
            raise TemplateFormatError(f"bad bit shapes: code {code.shape}, mask {mask.shape}")
        grid = (int(mask.shape[0]), int(mask.shape[1]))
        return cls(
            grid,
            np.packbits(code.astype(bool).ravel()).tobytes(),
            np.packbits(mask.astype(bool).ravel()).tobytes(),
        )

    def to_bytes(self) -> bytes:
        """Serialise to format version :data:`FORMAT_VERSION`."""
        h, w = self.grid
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, BITS_PER_CELL, h, w, len(self.code), len(self.mask)
        )
        return header + self.code + self.mask

    @classmethod
    def from_bytes(cls, data: bytes) -> Template:
        """Parse and validate serialised bytes.

        Raises :class:`TemplateFormatError` on truncation, wrong magic, unknown
        version, unsupported bits per cell, length mismatch or trailing bytes.
        """
        if len(data) < _HEADER.size:
            raise TemplateFormatError(f"template truncated: {len(data)} < {_HEADER.size} bytes")
        magic, version, bpc, h, w, n_code, n_mask = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise TemplateFormatError("not a palm template (wrong magic bytes)")
        if version != FORMAT_VERSION:
            raise TemplateFormatError(f"unknown template format version {version}")
        if bpc != BITS_PER_CELL:
            raise TemplateFormatError(f"unsupported bits per cell {bpc}")
        expected = _HEADER.size + n_code + n_mask
        if len(data) < expected:
            raise TemplateFormatError(f"template truncated: {len(data)} < {expected} bytes")
        if len(data) > expected:
            raise TemplateFormatError(f"{len(data) - expected} unexpected trailing bytes")
        body = data[_HEADER.size :]
        return cls((h, w), bytes(body[:n_code]), bytes(body[n_code:]))


def _check_padding(packed: bytes, n_bits: int, what: str) -> None:
    spare = len(packed) * 8 - n_bits
    if spare and packed[-1] & ((1 << spare) - 1):
        raise TemplateFormatError(f"{what} padding bits are not zero")
