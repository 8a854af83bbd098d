"""Tests of identity.imageio: decoding refuses bad uploads, encoding round-trips."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from image_bytes import png_header

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


def _refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decoding fail the test: size checks must come first."""

    def forbidden(*_: object) -> None:
        raise AssertionError("cv2.imdecode called before the size check")

    monkeypatch.setattr("identity.imageio.cv2.imdecode", forbidden)


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF with one IFD: deflate-compressed 8-bit grey, one strip."""
    tags = [
        (256, 4, width),  # ImageWidth, LONG
        (257, 4, height),  # ImageLength
        (258, 3, 8),  # BitsPerSample, SHORT
        (259, 3, 8),  # Compression: deflate
        (262, 3, 1),  # PhotometricInterpretation: BlackIsZero
        (273, 4, 8 + 2 + 12 * 9 + 4),  # StripOffsets: right after the IFD
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, 16),  # StripByteCounts
    ]
    ifd = len(tags).to_bytes(2, "little")
    for tag, kind, value in tags:
        ifd += struct.pack("<HHI", tag, kind, 1) + value.to_bytes(4, "little")
    return b"II*\x00" + (8).to_bytes(4, "little") + ifd + b"\x00" * 4 + zlib.compress(b"\x00" * 64)


def _webp_lossless_header(width: int, height: int) -> bytes:
    """A RIFF/WebP lossless (VP8L) file whose header declares ``width`` x ``height``."""
    bits = (width - 1) | ((height - 1) << 14)  # 14 bits each, alpha and version 0
    payload = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 16
    chunk = b"VP8L" + len(payload).to_bytes(4, "little") + payload
    return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk


@pytest.mark.parametrize(
    "data",
    [
        png_header(20_000, 20_000),
        _tiff_header(20_000, 20_000),
        _webp_lossless_header(16_000, 16_000),
    ],
    ids=["png", "deflate-tiff", "webp"],
)
def test_huge_images_are_refused_from_the_header(
    monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    _refuse_decoding(monkeypatch)
    with pytest.raises(InvalidImageError, match="pixels"):
        decode_image(data)


def test_unknown_header_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_decoding(monkeypatch)
    with pytest.raises(InvalidImageError, match="no readable image header"):
        decode_image(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n")


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_truncated_images_are_refused(extension: str) -> None:
    ok, encoded = cv2.imencode(extension, _gradient(120, 160))
    assert ok
    truncated = encoded.tobytes()[: len(encoded) // 3]
    with pytest.raises(InvalidImageError):
        decode_image(truncated)


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tiff"])
def test_one_pixel_images_are_refused(extension: str) -> None:
    ok, encoded = cv2.imencode(extension, np.full((1, 1), 128, np.uint8))
    assert ok
    with pytest.raises(InvalidImageError, match="at least 64 px"):
        decode_image(encoded.tobytes())


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    deep = (np.add.outer(np.arange(80), np.arange(100)) * 500).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", deep)
    assert ok
    decoded = decode_image(encoded.tobytes())
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, (deep >> 8).astype(np.uint8))


def test_colour_png_becomes_bt601_grey() -> None:
    colour = np.zeros((70, 90, 3), np.uint8)
    colour[..., 1] = 200  # pure green in BGR
    ok, encoded = cv2.imencode(".png", colour)
    assert ok
    decoded = decode_image(encoded.tobytes())
    assert decoded.shape == (70, 90)
    assert abs(int(decoded[0, 0]) - round(0.587 * 200)) <= 1
