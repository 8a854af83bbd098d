"""Template binary format: round trip and every malformed-bytes case."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from identity.errors import TemplateFormatError
from identity.template import FORMAT_VERSION, MAGIC, Template


def _template(seed: int = 0, grid: tuple[int, int] = (32, 32)) -> Template:
    rng = np.random.default_rng(seed)
    code = rng.random((3, *grid)) < 0.5
    mask = rng.random(grid) < 0.9
    return Template.from_bits(code, mask)


def test_round_trip_preserves_every_bit() -> None:
    t = _template()
    back = Template.from_bytes(t.to_bytes())
    assert back == t
    assert np.array_equal(back.code_bits(), t.code_bits())
    assert np.array_equal(back.mask_bits(), t.mask_bits())


def test_round_trip_with_padding_bits() -> None:
    t = _template(grid=(5, 3))  # 45 code bits, 15 mask bits: both need padding
    assert Template.from_bytes(t.to_bytes()) == t


def test_header_fields() -> None:
    data = _template().to_bytes()
    assert data[:4] == MAGIC
    assert data[4] == FORMAT_VERSION
    assert data[6] == 1  # one variant
    assert len(data) == 19 + 384 + 128


@pytest.mark.parametrize("cut", [0, 3, 10, 17, 18, 100, 529])
def test_truncation_refused(cut: int) -> None:
    with pytest.raises(TemplateFormatError, match="truncated"):
        Template.from_bytes(_template().to_bytes()[:cut])


def test_trailing_bytes_refused() -> None:
    with pytest.raises(TemplateFormatError, match="trailing"):
        Template.from_bytes(_template().to_bytes() + b"\x00")


def test_wrong_magic_refused() -> None:
    data = b"XXXX" + _template().to_bytes()[4:]
    with pytest.raises(TemplateFormatError, match="magic"):
        Template.from_bytes(data)


def test_unknown_version_refused() -> None:
    data = bytearray(_template().to_bytes())
    data[4] = FORMAT_VERSION + 1
    with pytest.raises(TemplateFormatError, match="version"):
        Template.from_bytes(bytes(data))


def test_unsupported_bits_per_cell_refused() -> None:
    data = bytearray(_template().to_bytes())
    data[5] = 4
    with pytest.raises(TemplateFormatError, match="bits per cell"):
        Template.from_bytes(bytes(data))


def _with_header(
    grid: tuple[int, int], n_code: int, n_mask: int, body: bytes, variants: int = 1
) -> bytes:
    header = struct.pack(">4sBBBHHII", MAGIC, FORMAT_VERSION, 3, variants, *grid, n_code, n_mask)
    return header + body


def test_length_fields_inconsistent_with_grid_refused() -> None:
    t = _template()
    data = _with_header((32, 16), 384, 128, t.code + t.mask)
    with pytest.raises(TemplateFormatError, match="code has 384 bytes"):
        Template.from_bytes(data)


def test_mask_length_mismatch_refused() -> None:
    t = _template()
    data = _with_header((32, 32), 384, 127, t.code + t.mask[:127])
    with pytest.raises(TemplateFormatError, match="mask has 127 bytes"):
        Template.from_bytes(data)


@pytest.mark.parametrize("grid", [(0, 32), (32, 0), (2000, 2)])
def test_grid_out_of_range_refused(grid: tuple[int, int]) -> None:
    with pytest.raises(TemplateFormatError, match="out of range"):
        Template.from_bytes(_with_header(grid, 0, 0, b""))


def test_nonzero_padding_bits_refused() -> None:
    t = _template(grid=(5, 3))
    code = t.code[:-1] + bytes([t.code[-1] | 0x01])
    data = _with_header((5, 3), len(code), len(t.mask), code + t.mask)
    with pytest.raises(TemplateFormatError, match="padding"):
        Template.from_bytes(data)


def test_constructor_validates_lengths() -> None:
    with pytest.raises(TemplateFormatError):
        Template((32, 32), b"\x00" * 10, b"\x00" * 128)


def test_template_is_immutable() -> None:
    t = _template()
    with pytest.raises(AttributeError):
        t.grid = (1, 1)  # type: ignore[misc]
