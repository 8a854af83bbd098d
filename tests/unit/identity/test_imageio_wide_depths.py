"""``identity.imageio``: 32-bit float and integer TIFFs, the file's own size in the
too-small-after-shrinking message, and :func:`read_image_file` (regular files only,
bounded)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from identity.errors import InvalidImageError
from identity.imageio import decode_image, decode_image_offline, read_image_file


def _tiff(values: np.ndarray) -> bytes:
    """A one-plane TIFF of ``values`` (float32 -> mode F, int32 -> mode I)."""
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="TIFF")
    return buffer.getvalue()


def _ramp(rows: int = 96, cols: int = 128) -> np.ndarray:
    return np.add.outer(np.arange(rows), np.arange(cols)) % 256


def test_float_tiff_in_zero_to_one_is_scaled_by_255_and_rounded() -> None:
    eight = _ramp().astype(np.uint8)
    floats = (eight / 255.0).astype(np.float32)
    for decode in (decode_image, decode_image_offline):
        np.testing.assert_array_equal(decode(_tiff(floats)), eight)


@pytest.mark.parametrize(("bad", "reason"), [(np.nan, "NaN or infinite"),
                                              (np.inf, "NaN or infinite"),
                                              (1.5, r"must lie in 0\.\.1"),
                                              (-0.25, r"must lie in 0\.\.1")])
def test_float_tiff_with_nan_infinity_or_out_of_range_values_is_refused(
        bad: float, reason: str) -> None:
    floats = (_ramp() / 255.0).astype(np.float32)
    floats[5, 7] = bad
    with pytest.raises(InvalidImageError, match=f"32-bit float .*{reason}"):
        decode_image_offline(_tiff(floats))


def test_int32_tiff_is_reduced_by_its_data_depth_as_16_bit_data_is() -> None:
    twelve = (_ramp() * 16).astype(np.int32)  # 12-bit data: 0..4080
    expected = (twelve >> 4).astype(np.uint8)
    np.testing.assert_array_equal(decode_image_offline(_tiff(twelve)), expected)
    wide = (_ramp().astype(np.int64) << 16).astype(np.int32)  # 24-bit data
    np.testing.assert_array_equal(decode_image_offline(_tiff(wide)), _ramp().astype(np.uint8))


def test_negative_int32_samples_are_refused() -> None:
    values = _ramp().astype(np.int32)
    values[0, 0] = -1
    with pytest.raises(InvalidImageError, match="negative 32-bit integer"):
        decode_image_offline(_tiff(values))


def test_too_small_after_shrinking_names_the_files_own_size() -> None:
    ok, encoded = cv2.imencode(".png", np.full((19200, 64), 128, np.uint8))
    assert ok
    with pytest.raises(InvalidImageError, match=r"image is 64x19200 px, 14x4096 px once "
                                                r"shrunk to 4096 px .* at least 64 px"):
        decode_image_offline(encoded.tobytes())


def test_read_image_file_reads_a_regular_file_and_follows_links(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"abc")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    assert read_image_file(tmp_path / "link.png") == b"abc"


def test_read_image_file_refuses_fifos_devices_and_folders(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(OSError, match=r"not a regular file \(a FIFO\)"):
        read_image_file(tmp_path / "fifo")
    with pytest.raises(OSError, match="a character device"):
        read_image_file(tmp_path / "zero")
    with pytest.raises(IsADirectoryError):
        read_image_file(tmp_path)


def test_read_image_file_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 101)
    assert read_image_file(tmp_path / "big", max_bytes=101) == b"x" * 101
    with pytest.raises(InvalidImageError, match="101 bytes; the limit is 100 bytes"):
        read_image_file(tmp_path / "big", max_bytes=100)


def test_int32_tiff_of_8_bit_data_is_read_as_8_bit() -> None:
    """Was read as 10-bit data (shifted right by 2: four times too dark)."""
    eight = _ramp().astype(np.int32)  # 0..255
    for decode in (decode_image, decode_image_offline):
        np.testing.assert_array_equal(decode(_tiff(eight)), _ramp().astype(np.uint8))


def test_full_range_signed_int32_tiff_is_31_bit_data() -> None:
    """A signed type has one bit less: full-range int32 was taken as 32-bit (half as
    bright); int32 ``2**31 - 1`` is white."""
    full = (_ramp().astype(np.int64) << 23 | 0x7FFFFF).astype(np.int32)  # 0..2**31-1
    np.testing.assert_array_equal(decode_image(_tiff(full)), _ramp().astype(np.uint8))
    white = np.full((96, 128), 2**31 - 1, np.int32)
    assert int(decode_image(_tiff(white)).min()) == 255


def test_float64_tiff_is_decoded_as_float32_is() -> None:
    """Pillow cannot open a 64-bit float TIFF (was 'no readable image header'): its size
    comes from the TIFF tags, OpenCV decodes it; size limits still apply first."""
    eight = _ramp().astype(np.uint8)
    ok, encoded = cv2.imencode(".tiff", eight / 255.0)  # float64 samples
    assert ok
    for decode in (decode_image, decode_image_offline):
        np.testing.assert_array_equal(decode(encoded.tobytes()), eight)
    bad = eight / 255.0
    bad[1, 1] = np.nan
    ok, encoded = cv2.imencode(".tiff", bad)
    with pytest.raises(InvalidImageError, match="64-bit float .*NaN"):
        decode_image(encoded.tobytes())
    ok, small = cv2.imencode(".tiff", np.zeros((40, 128)))
    with pytest.raises(InvalidImageError, match="at least 64 px"):
        decode_image(small.tobytes())
    with pytest.raises(InvalidImageError, match="no readable image header"):
        decode_image(b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64)  # an empty directory
