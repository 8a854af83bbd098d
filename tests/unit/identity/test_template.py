"""Template binary format version 3: round trip and every malformed-bytes case."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from identity.errors import TemplateFormatError
from identity.template import FORMAT_VERSION, MAGIC, Template

HEADER = ">4sBBBHHIII"  # version 3: ... code, mask and ordinal lengths
HEADER_SIZE = struct.calcsize(HEADER)


def _template(seed: int = 0, grid: tuple[int, int] = (32, 32), variants: int = 1) -> Template:
    rng = np.random.default_rng(seed)
    code = rng.random((variants, 3, *grid)) < 0.5
    mask = rng.random((variants, *grid)) < 0.9
    ordinal = rng.random((variants, 3, *grid)) < 0.5
    return Template.from_bits(code, mask, ordinal)


def test_round_trip_preserves_every_bit() -> None:
    t = _template(variants=3)
    back = Template.from_bytes(t.to_bytes())
    assert back == t
    assert back.has_ordinal
    for v in range(3):
        assert np.array_equal(back.code_bits(v), t.code_bits(v))
        assert np.array_equal(back.mask_bits(v), t.mask_bits(v))
        assert np.array_equal(back.ordinal_bits(v), t.ordinal_bits(v))


def test_from_bits_keeps_the_ordinal_bits_apart_from_the_code() -> None:
    rng = np.random.default_rng(3)
    code, mask = rng.random((2, 3, 6, 5)) < 0.5, rng.random((2, 6, 5)) < 0.5
    ordinal = rng.random((2, 3, 6, 5)) < 0.5
    t = Template.from_bits(code, mask, ordinal)
    for v in range(2):
        assert np.array_equal(t.code_bits(v), code[v])
        assert np.array_equal(t.ordinal_bits(v), ordinal[v])
    one = Template.from_bits(code[0], mask[0], ordinal[0])  # (3, H, W) form
    assert np.array_equal(one.ordinal_bits(), ordinal[0])
    with pytest.raises(TemplateFormatError, match="ordinal"):
        Template.from_bits(code, mask, ordinal[:, :2])


def test_round_trip_with_padding_bits() -> None:
    t = _template(grid=(5, 3), variants=2)  # 45 code bits, 15 mask bits: both need padding
    assert Template.from_bytes(t.to_bytes()) == t


def test_header_fields() -> None:
    data = _template().to_bytes()
    assert data[:4] == MAGIC
    assert data[4] == FORMAT_VERSION == 3
    assert data[6] == 1  # one variant
    assert struct.unpack_from(">III", data, 11) == (384, 128, 384)
    assert HEADER_SIZE == 23
    assert len(data) == 23 + 384 + 128 + 384


def test_layout_is_code_then_mask_then_ordinal() -> None:
    t = _template(variants=2)
    data = t.to_bytes()
    assert data[HEADER_SIZE:] == t.code + t.mask + t.ordinal


def test_compcode_only_template_lives_in_memory_but_is_not_stored() -> None:
    rng = np.random.default_rng(1)
    t = Template.from_bits(rng.random((3, 8, 8)) < 0.5, np.ones((8, 8), bool))
    assert not t.has_ordinal
    assert t.ordinal == b""
    with pytest.raises(TemplateFormatError, match="no ordinal code"):
        t.ordinal_bits()
    with pytest.raises(TemplateFormatError, match="ordinal"):
        t.to_bytes()


def test_ordinal_variant_out_of_range() -> None:
    with pytest.raises(IndexError):
        _template(variants=2).ordinal_bits(2)


@pytest.mark.parametrize("cut", [0, 3, 10, 17, 18, 22, 100, 529, 23 + 384 + 128, 918])
def test_truncation_refused(cut: int) -> None:
    data = _template().to_bytes()
    assert cut < len(data)
    with pytest.raises(TemplateFormatError, match="truncated"):
        Template.from_bytes(data[:cut])


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
    with pytest.raises(TemplateFormatError, match="unknown template format version 4"):
        Template.from_bytes(bytes(data))


def test_version_2_bytes_are_refused_clearly() -> None:
    t = _template()
    v2 = struct.pack(">4sBBBHHII", MAGIC, 2, 3, 1, 32, 32, 384, 128) + t.code + t.mask
    with pytest.raises(TemplateFormatError,
                       match="format version 2 has no ordinal code.*enrolled again"):
        Template.from_bytes(v2)


def test_version_1_bytes_are_refused_clearly() -> None:
    v1 = struct.pack(">4sBBHHII", MAGIC, 1, 3, 32, 32, 384, 128) + bytes(512)
    with pytest.raises(TemplateFormatError, match="version 1.*enrolled again"):
        Template.from_bytes(v1)


def test_unsupported_bits_per_cell_refused() -> None:
    data = bytearray(_template().to_bytes())
    data[5] = 4
    with pytest.raises(TemplateFormatError, match="bits per cell"):
        Template.from_bytes(bytes(data))


def _with_header(
    grid: tuple[int, int], n_code: int, n_mask: int, body: bytes, variants: int = 1,
    n_ord: int | None = None,
) -> bytes:
    header = struct.pack(HEADER, MAGIC, FORMAT_VERSION, 3, variants, *grid, n_code, n_mask,
                         n_code if n_ord is None else n_ord)
    return header + body


def test_length_fields_inconsistent_with_grid_refused() -> None:
    t = _template()
    data = _with_header((32, 16), 384, 128, t.code + t.mask + t.ordinal)
    with pytest.raises(TemplateFormatError, match="code has 384 bytes"):
        Template.from_bytes(data)


def test_mask_length_mismatch_refused() -> None:
    t = _template()
    data = _with_header((32, 32), 384, 127, t.code + t.mask[:127] + t.ordinal)
    with pytest.raises(TemplateFormatError, match="mask has 127 bytes"):
        Template.from_bytes(data)


@pytest.mark.parametrize("n_ord", [0, 383, 385, 768])
def test_ordinal_length_other_than_the_code_length_refused(n_ord: int) -> None:
    t = _template()
    body = t.code + t.mask + (t.ordinal * 2)[:n_ord]
    with pytest.raises(TemplateFormatError, match=f"ordinal length {n_ord} bytes differs"):
        Template.from_bytes(_with_header((32, 32), 384, 128, body, n_ord=n_ord))


def test_constructor_refuses_an_ordinal_of_another_length() -> None:
    t = _template()
    with pytest.raises(TemplateFormatError, match="ordinal code has 383 bytes"):
        Template(t.grid, t.code, t.mask, 1, t.ordinal[:383])


@pytest.mark.parametrize("grid", [(0, 32), (32, 0), (2000, 2)])
def test_grid_out_of_range_refused(grid: tuple[int, int]) -> None:
    with pytest.raises(TemplateFormatError, match="out of range"):
        Template.from_bytes(_with_header(grid, 0, 0, b""))


def test_nonzero_padding_bits_refused() -> None:
    t = _template(grid=(5, 3))
    code = t.code[:-1] + bytes([t.code[-1] | 0x01])
    data = _with_header((5, 3), len(code), len(t.mask), code + t.mask + t.ordinal)
    with pytest.raises(TemplateFormatError, match="code padding"):
        Template.from_bytes(data)


@pytest.mark.parametrize("variant", [0, 1])
def test_nonzero_ordinal_padding_bits_refused(variant: int) -> None:
    t = _template(grid=(5, 3), variants=2)
    n = len(t.ordinal) // 2
    ordinal = bytearray(t.ordinal)
    ordinal[(variant + 1) * n - 1] |= 0x01  # last byte of that variant: 3 padding bits
    data = _with_header((5, 3), len(t.code), len(t.mask), t.code + t.mask + bytes(ordinal),
                        variants=2)
    with pytest.raises(TemplateFormatError, match="ordinal code padding"):
        Template.from_bytes(data)


@pytest.mark.parametrize("seed", range(5))
def test_corrupted_foreign_or_truncated_v3_bytes_are_refused(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = bytearray(_template(seed, grid=(9, 7), variants=3).to_bytes())
    foreign = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    with pytest.raises(TemplateFormatError):
        Template.from_bytes(foreign)
    claims = bytearray(data)
    claims[6] = 4  # claims 4 variants: lengths no longer fit
    with pytest.raises(TemplateFormatError):
        Template.from_bytes(bytes(claims))
    with pytest.raises(TemplateFormatError, match="truncated"):
        Template.from_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
    swapped = bytearray(data)
    swapped[19:23] = struct.pack(">I", len(data))  # an absurd ordinal length
    with pytest.raises(TemplateFormatError, match="ordinal length"):
        Template.from_bytes(bytes(swapped))
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    with pytest.raises(TemplateFormatError, match="magic"):
        Template.from_bytes(png)


def test_constructor_validates_lengths() -> None:
    with pytest.raises(TemplateFormatError):
        Template((32, 32), b"\x00" * 10, b"\x00" * 128)


def test_template_is_immutable() -> None:
    t = _template()
    with pytest.raises(AttributeError):
        t.grid = (1, 1)  # type: ignore[misc]
