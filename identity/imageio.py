"""Decoding uploaded image bytes into grey palm images, and encoding them back to PNG.

Everything that arrives from a scanner, kiosk or HTTP upload goes through
:func:`decode_image`, which refuses anything that is not a plausible palm image
before it reaches the ROI extractor.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from identity.errors import InvalidImageError

MAX_ENCODED_BYTES = 20 * 1024 * 1024
"""Largest accepted encoded payload (bytes); larger uploads are refused unread."""

MAX_PIXELS = 25_000_000
"""Largest accepted decoded image (pixels, width x height): guards against decompression bombs."""

MIN_SIDE = 64
"""Smallest accepted image side (px); a palm ROI needs at least this much."""


def _header_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header alone (Pillow parses headers lazily).

    ``PIL.Image.open`` identifies the format and reads the header without decoding
    pixels; formats Pillow cannot size (e.g. OpenEXR, Radiance HDR) are refused, since
    their size could only be learnt by decoding them.

    Raises:
        InvalidImageError: the header is not that of a known image format, or declares
            more than Pillow's own bomb limit (2 x ``Image.MAX_IMAGE_PIXELS``) pixels.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as error:
            raise InvalidImageError(f"image has too many pixels ({error})") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise InvalidImageError(
                "data is not a decodable image (PNG, JPEG, BMP, TIFF, WebP, ...): "
                "no readable image header"
            ) from error
    return int(width), int(height)


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

    The width and height are read from the header (Pillow, no pixel decoding) and
    checked before OpenCV decodes anything, so decompression bombs (e.g. a 20000 x 20000
    deflate TIFF of a few kB) are refused without allocating their pixels; formats
    whose header Pillow cannot read are refused. Colour images are converted to grey
    (ITU-R BT.601 luma, as ``cv2.IMREAD_GRAYSCALE``); OpenCV scales 16-bit images to
    8 bits.

    Args:
        data: the encoded file content.

    Returns:
        ``(H, W)`` ``uint8`` array, C-contiguous.

    Raises:
        InvalidImageError: the bytes are empty, larger than ``MAX_ENCODED_BYTES``, not a
            decodable image (no header Pillow can read, or truncated pixel data), or
            the image is smaller than ``MIN_SIDE`` px on a side or larger than
            ``MAX_PIXELS`` pixels.
    """
    if not data:
        raise InvalidImageError("image data is empty")
    if len(data) > MAX_ENCODED_BYTES:
        raise InvalidImageError(
            f"image data is {len(data)} bytes; the limit is {MAX_ENCODED_BYTES} bytes"
        )
    _check_size(*_header_size(data))  # refuse decompression bombs before decoding
    buffer = np.frombuffer(data, dtype=np.uint8)
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
