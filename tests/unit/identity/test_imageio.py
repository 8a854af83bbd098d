"""Tests of identity.imageio: decoding refuses bad uploads, encoding round-trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity.errors import InvalidImageError
from identity.imageio import MAX_ENCODED_BYTES, decode_image, encode_png


def _gradient(height: int, width: int) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def test_png_round_trip_is_lossless() -> None:
    gray = _gradient(80, 100)
    decoded = decode_image(encode_png(gray))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (80, 100)
    np.testing.assert_array_equal(decoded, gray)


def test_colour_jpeg_becomes_grey() -> None:
    colour = np.zeros((70, 90, 3), np.uint8)
    colour[..., 2] = 200  # pure red in BGR
    ok, jpeg = cv2.imencode(".jpg", colour)
    assert ok
    decoded = decode_image(jpeg.tobytes())
    assert decoded.shape == (70, 90)
    assert 50 < float(decoded.mean()) < 70  # BT.601 luma of red 200 is ~60


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a decodable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a decodable image"),
    ],
)
def test_bad_bytes_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImageError, match=reason):
        decode_image(data)


def test_too_small_image_is_refused() -> None:
    with pytest.raises(InvalidImageError, match="at least 64 px"):
        decode_image(encode_png(_gradient(63, 200)))


def test_too_many_pixels_is_refused() -> None:
    huge = np.zeros((5001, 5001), np.uint8)  # 25,010,001 pixels
    with pytest.raises(InvalidImageError, match="pixels"):
        decode_image(encode_png(huge))


def test_oversized_payload_is_refused_unread() -> None:
    with pytest.raises(InvalidImageError, match="bytes; the limit"):
        decode_image(b"\x89PNG" + b"\x00" * MAX_ENCODED_BYTES)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), np.float32), np.zeros((10, 10, 3), np.uint8), np.zeros((0, 5), np.uint8)],
)
def test_encode_png_refuses_non_grey_arrays(bad: np.ndarray) -> None:
    with pytest.raises(InvalidImageError):
        encode_png(bad)
