"""Decoding uploaded image bytes into grey palm images, and encoding them back to PNG.

Everything that arrives from a scanner, kiosk or HTTP upload goes through
:func:`decode_image`, which refuses anything that is not a plausible palm image
before it reaches the ROI extractor.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from identity.errors import InvalidImageError

MAX_ENCODED_BYTES = 20 * 1024 * 1024
"""Largest accepted encoded payload (bytes); larger uploads are refused unread."""

MAX_PIXELS = 25_000_000
"""Largest accepted decoded image (pixels, width x height): guards against decompression bombs."""

MIN_SIDE = 64
"""Smallest accepted image side (px); a palm ROI needs at least this much."""


def _header_size(buffer: NDArray[np.uint8]) -> tuple[int, int] | None:
    """Width and height read from a PNG or JPEG header without decoding pixels, if found."""
    data = buffer.tobytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    return None


def _check_size(width: int, height: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidImageError(
            f"image is {width}x{height} px; each side must be at least {MIN_SIDE} px"
        )
    if width * height > MAX_PIXELS:
        raise InvalidImageError(
            f"image is {width}x{height} px ({width * height} pixels); the limit is {MAX_PIXELS}"
        )


def decode_image(data: bytes) -> NDArray[np.uint8]:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF, ... via OpenCV) to a grey image.

    Colour images are converted to grey (ITU-R BT.601 luma, as ``cv2.IMREAD_GRAYSCALE``);
    OpenCV scales 16-bit images to 8 bits.

    Args:
        data: the encoded file content.

    Returns:
        ``(H, W)`` ``uint8`` array, C-contiguous.

    Raises:
        InvalidImageError: the bytes are empty, larger than ``MAX_ENCODED_BYTES``, not a
            decodable image, or the image is smaller than ``MIN_SIDE`` px on a side or
            larger than ``MAX_PIXELS`` pixels.
    """
    if not data:
        raise InvalidImageError("image data is empty")
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidImageError(
            f"image data is {len(data)} bytes; the limit is {MAX_ENCODED_BYTES} bytes"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    header = _header_size(buffer)
    if header is not None and min(header) > 0:
        _check_size(*header)  # refuse decompression bombs before allocating pixels
    decoded = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    if decoded is None or decoded.ndim != 2 or decoded.size == 0:
        raise InvalidImageError("data is not a decodable image (PNG, JPEG, BMP, TIFF, ...)")
    height, width = decoded.shape
    _check_size(width, height)
    return np.ascontiguousarray(decoded, dtype=np.uint8)


def encode_png(gray: NDArray[np.uint8]) -> bytes:
    """Encode a grey image losslessly as PNG.

    Args:
        gray: ``(H, W)`` ``uint8`` array with H, W >= 1.

    Returns:
        The PNG file content.

    Raises:
        InvalidImageError: ``gray`` is not a non-empty 2-D ``uint8`` array.
    """
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise InvalidImageError("encode_png needs a 2-D uint8 array")
    if gray.size == 0:
        raise InvalidImageError("encode_png needs a non-empty image")
    ok, encoded = cv2.imencode(".png", gray)
    if not ok:  # pragma: no cover - OpenCV does not fail on valid uint8 arrays
        raise InvalidImageError("PNG encoding failed")
    return bytes(encoded.tobytes())
