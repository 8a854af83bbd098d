"""Decoding image bytes into grey palm images, and encoding them back to PNG.

Everything that arrives from a scanner, kiosk or HTTP upload goes through
:func:`decode_image`, which refuses anything that is not a plausible palm image
before it reaches the ROI extractor (upload limits: ``MAX_ENCODED_BYTES``,
``MAX_PIXELS``). Offline work on one's own data sets (evaluation of full-resolution
phone photos, up to ``OFFLINE_MAX_PIXELS``) uses :func:`decode_image_offline`, which
shrinks large images to ``max_side`` px while it decodes.

Bit depth: 8-bit images are decoded as OpenCV's ``cv2.IMREAD_GRAYSCALE`` decodes them.
Images stored with 16 bits per sample (PNG, TIFF) are read at 16 bits and reduced to
8 by the bit depth their data actually uses: the smallest of 8, 10, 12, 14 and 16 bits
that holds the image's largest value (:func:`data_bits`: 8-bit data kept in a 16-bit
file is read unchanged, as for wider integer types below); the value is shifted right by
``bits - 8`` (truncating, as OpenCV's own 16 -> 8 bit conversion does for 16-bit data).
So a NIR sensor's 12-bit values (0..4095) in a 16-bit PNG give 0..255, not 0..15.
This is no contrast stretch: one fixed scale per depth, never the image's own range.
Limit: the depth is inferred from the data, so an image so dark that its largest value
fits a smaller depth (a 12-bit image with every value below 1024, i.e. below a
quarter of the sensor's range) is read as that smaller depth (brighter than it is).

Other sample formats (TIFF): 32-bit (or other signed) integer samples are reduced the
same way, by the smallest of ``WIDE_DEPTHS`` (8, 10, 12, 14, 16, 24, 32 bits) no wider
than the type's usable depth (its width, less the sign bit for signed types: 31 bits
for ``int32``, the last candidate) that holds the largest value; data whose largest
value fits 8 bits is taken as 8-bit (unchanged); negative values are refused. Float
samples (32 or 64 bits) are read by the float image convention, 0.0 = black and 1.0 =
white, scaled by 255 and rounded; an image with a NaN, an infinite value or a value
outside 0..1 is refused (:class:`InvalidImageError`) rather than guessed at. Pillow
cannot open 64-bit float TIFFs: their width and height are read from the first image
file directory's tags instead (:func:`_float64_tiff_size`), then OpenCV decodes them.

Files: :func:`read_image_file` reads one's own image file for offline decoding (regular
files only, at most ``OFFLINE_MAX_ENCODED_BYTES`` + 1 bytes).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, TiffImagePlugin

from identity.errors import InvalidImageError

MAX_ENCODED_BYTES = 20 * 1024 * 1024
"""Largest accepted encoded payload (bytes) of an upload; larger ones are refused unread."""

MAX_PIXELS = 25_000_000
"""Largest accepted decoded upload (pixels, width x height): guards against decompression bombs."""

MIN_SIDE = 64
"""Smallest accepted image side (px); a palm ROI needs at least this much."""

OFFLINE_MAX_ENCODED_BYTES = 512 * 1024 * 1024
"""Largest file (bytes) :func:`decode_image_offline` accepts."""

OFFLINE_MAX_PIXELS = 178_000_000
"""Largest image (pixels, width x height, from the header) :func:`decode_image_offline`
accepts: the decompression-bomb limit of offline decoding, checked before any pixel is
decoded. Just below Pillow's own header limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, 179 MP
by default), which the header check also applies: 48 and 108 MP phone photos pass, a
200 MP one (16320 x 12240) is refused."""

OFFLINE_MAX_SIDE = 4096
"""Default longest side (px) of what :func:`decode_image_offline` returns: larger
images are shrunk to it (a palm then still spans well over ``ROI_SIZE`` px)."""

DATA_DEPTHS = (8, 10, 12, 14, 16)
"""Bit depths a 16-bit image's data may use (see :func:`data_bits`)."""

WIDE_DEPTHS = (*DATA_DEPTHS, 24, 32)
"""Bit depths the data of an image with integer samples other than 8 or unsigned 16 bits
may use (those below its type's usable depth, then that depth; see the module
docstring)."""

_DECODE_FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: JPEG with extra frames (phone cameras)
_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))


def _header(data: bytes) -> tuple[int, int, str]:
    """Width, height and format name from the image header alone (Pillow parses headers
    lazily).

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
                return int(width), int(height), str(image.format)
        except Image.DecompressionBombError as error:
            raise InvalidImageError(f"image has too many pixels ({error})") from error
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
            size = _float64_tiff_size(data)
            if size is not None:
                return size[0], size[1], "TIFF"
            raise InvalidImageError(
                "data is not a decodable image (PNG, JPEG, BMP, TIFF, WebP, ...): "
                "no readable image header"
            ) from error


def _float64_tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a TIFF whose samples are all 64-bit floats (which Pillow
    cannot open), from its first image file directory's tags alone; None for any other
    data or a directory that does not parse."""
    if data[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    try:
        big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: a 16-byte file header
        directory = TiffImagePlugin.ImageFileDirectory_v2(data[:16 if big else 8])
        stream = io.BytesIO(data)
        stream.seek(directory.next)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a corrupt directory is refused below
            directory.load(stream)
        width, height = directory.get(256), directory.get(257)
        float64 = {*directory.get(258, ())} == {64} and {*directory.get(339, ())} == {3}
    except Exception:  # noqa: BLE001 - any malformed directory: not a readable header
        return None
    if not (float64 and isinstance(width, int) and isinstance(height, int)
            and width > 0 and height > 0):
        return None
    return width, height


def _check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidImageError(
            f"image is {width}x{height} px; each side must be at least {MIN_SIDE} px"
        )
    if width * height > max_pixels:
        raise InvalidImageError(
            f"image is {width}x{height} px ({width * height} pixels); the limit is {max_pixels}"
        )


def _check_bytes(data: bytes, max_bytes: int) -> None:
    if not data:
        raise InvalidImageError("image data is empty")
    if len(data) > max_bytes:
        raise InvalidImageError(
            f"image data is {len(data)} bytes; the limit is {max_bytes} bytes"
        )


def data_bits(image: NDArray[np.uint16]) -> int:
    """The bit depth a 16-bit image's data uses: the smallest of ``DATA_DEPTHS``
    (8, 10, 12, 14, 16) that holds its largest value (an all-zero image: 8)."""
    top = int(image.max()) if image.size else 0
    return next((bits for bits in DATA_DEPTHS if top < 1 << bits), DATA_DEPTHS[-1])


def _decode(data: bytes, flags: int) -> NDArray[Any]:
    """``cv2.imdecode`` to one grey plane at its stored depth. Raises InvalidImageError."""
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if decoded is None or decoded.ndim != 2 or decoded.size == 0:
        raise InvalidImageError("data is not a decodable image (PNG, JPEG, BMP, TIFF, ...)")
    return decoded


def _eight_bits(decoded: NDArray[Any], bits: int | None) -> NDArray[np.uint8]:
    """``decoded`` as ``uint8``: 8-bit unchanged, 16-bit shifted right by ``bits - 8``
    (``bits`` from :func:`data_bits` of the full image when given, else of ``decoded``);
    other integer and float samples by :func:`_other_depth` (module docstring)."""
    if decoded.dtype == np.uint8:
        return np.ascontiguousarray(decoded, dtype=np.uint8)
    if decoded.dtype == np.uint16:
        deep = decoded.astype(np.uint16, copy=False)
        shift = (data_bits(deep) if bits is None else bits) - 8
        return np.ascontiguousarray(deep >> shift, dtype=np.uint8)
    return _other_depth(decoded)


def _other_depth(decoded: NDArray[Any]) -> NDArray[np.uint8]:
    """Integer samples (not ``uint8`` / ``uint16``) shifted right by their data's depth
    minus 8 (:data:`WIDE_DEPTHS` below the type's usable depth, then that depth: its
    width, less one bit for signed types; nothing for data that fits 8 bits), float
    samples 0..1 scaled by 255 and rounded.

    Raises:
        InvalidImageError: negative integers; float NaN, infinity or values outside 0..1;
            any other sample type.
    """
    width = decoded.dtype.itemsize * 8
    if decoded.dtype.kind == "f":
        values = decoded.astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidImageError(f"unsupported sample values: {width}-bit float image "
                                    f"with NaN or infinite samples")
        low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)
        if low < 0.0 or high > 1.0:
            raise InvalidImageError(f"unsupported sample values: {width}-bit float samples "
                                    f"must lie in 0..1 (black..white), found {low:g}..{high:g}")
        return np.ascontiguousarray(np.rint(values * 255.0), dtype=np.uint8)
    if decoded.dtype.kind in "iu":
        values64 = decoded.astype(np.int64)
        if values64.size and int(values64.min()) < 0:
            raise InvalidImageError(f"unsupported sample values: negative {width}-bit "
                                    f"integer samples")
        top = int(values64.max()) if values64.size else 0
        usable = width - 1 if decoded.dtype.kind == "i" else width  # no sign bit
        depths = [b for b in WIDE_DEPTHS if b < usable] + [usable]
        bits = next((b for b in depths if top < 1 << b), depths[-1])
        return np.ascontiguousarray(values64 >> max(bits - 8, 0), dtype=np.uint8)
    raise InvalidImageError(f"unsupported sample format: {decoded.dtype}")


def decode_image(data: bytes) -> NDArray[np.uint8]:
    """Decode uploaded image bytes (PNG, JPEG, BMP, TIFF, ... via OpenCV) to a grey image.

    The width and height are read from the header (Pillow, no pixel decoding) and
    checked before OpenCV decodes anything, so decompression bombs (e.g. a 20000 x 20000
    deflate TIFF of a few kB) are refused without allocating their pixels; formats
    whose header Pillow cannot read are refused. Colour images are converted to grey
    (ITU-R BT.601 luma, as ``cv2.IMREAD_GRAYSCALE``); 8-bit images decode exactly as
    ``cv2.IMREAD_GRAYSCALE`` decodes them; 16-bit images are reduced to 8 bits by the
    bit depth their data uses (see the module docstring and :func:`data_bits`).

    Args:
        data: the encoded file content.

    Returns:
        ``(H, W)`` ``uint8`` array, C-contiguous, the image's full size.

    Raises:
        InvalidImageError: the bytes are empty, larger than ``MAX_ENCODED_BYTES``, not a
            decodable image (no header Pillow can read, or truncated pixel data), or
            the image is smaller than ``MIN_SIDE`` px on a side or larger than
            ``MAX_PIXELS`` pixels.
    """
    _check_bytes(data, MAX_ENCODED_BYTES)
    width, height, _ = _header(data)
    _check_size(width, height)  # refuse decompression bombs before decoding
    gray = _eight_bits(_decode(data, _DECODE_FLAGS), None)
    _check_size(gray.shape[1], gray.shape[0])
    return gray


def decode_image_offline(data: bytes, *, max_side: int = OFFLINE_MAX_SIDE) -> NDArray[np.uint8]:
    """Decode one's own image file (offline evaluation, benchmarks) to a grey image of at
    most ``max_side`` px on its longest side; not for uploads (:func:`decode_image`).

    Same decoding as :func:`decode_image` (grey BT.601 luma, 8-bit exact, 16-bit by the
    data's bit depth), so an image whose longest side is at most ``max_side`` decodes to
    exactly what :func:`decode_image` gives, but with the offline limits
    ``OFFLINE_MAX_ENCODED_BYTES`` and ``OFFLINE_MAX_PIXELS`` (178 MP) instead of
    the upload limits. A larger image is shrunk, aspect kept, so that its longest side
    is ``max_side`` (``cv2.INTER_AREA``); a JPEG is first decoded by libjpeg at 1/2,
    1/4 or 1/8 scale (``cv2.IMREAD_REDUCED_GRAYSCALE_*``, the largest reduction that
    keeps the longest side at least ``max_side``), so a 100 MP JPEG never exists at
    full size in memory.

    Decompression bombs: the pixel count is read from the header and checked against
    ``OFFLINE_MAX_PIXELS`` before anything is decoded, and formats whose header cannot
    be read are refused. Memory: a JPEG needs about 1/4 to 1/64 of its pixel count in
    bytes; other formats are decoded at full size first (grey, 1 byte per pixel,
    2 for 16-bit: at most about 360 MB at ``OFFLINE_MAX_PIXELS``; 4 for 32-bit TIFF
    samples, which are converted at full size) plus decoder buffers.

    Args:
        data: the encoded file content.
        max_side: longest side (px) of the result, at least ``MIN_SIDE``.

    Returns:
        ``(H, W)`` ``uint8`` array, C-contiguous, ``max(H, W) <= max_side``.

    Raises:
        ValueError: ``max_side`` is below ``MIN_SIDE``.
        InvalidImageError: the bytes are empty, larger than ``OFFLINE_MAX_ENCODED_BYTES``,
            not a decodable image (or of sample values the module docstring refuses),
            larger than ``OFFLINE_MAX_PIXELS`` pixels, or smaller than ``MIN_SIDE`` px on
            a side (before or after shrinking; the message gives the file's own size).
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE} px, got {max_side}")
    _check_bytes(data, OFFLINE_MAX_ENCODED_BYTES)
    width, height, kind = _header(data)
    _check_size(width, height, OFFLINE_MAX_PIXELS)  # before decoding: bomb limit
    longest = max(width, height)
    flags = _DECODE_FLAGS
    if kind in _JPEG_FORMATS and longest > max_side:
        flags = next((f | cv2.IMREAD_ANYDEPTH for k, f in _REDUCED
                      if -(-longest // k) >= max_side), _DECODE_FLAGS)
    decoded = _decode(data, flags)
    bits = None
    if decoded.dtype == np.uint16:
        bits = data_bits(decoded.astype(np.uint16, copy=False))  # of the unshrunk image
    elif decoded.dtype != np.uint8:  # other depths: converted first, as decode_image does
        decoded = _eight_bits(decoded, None)
    rows, cols = decoded.shape
    if max(rows, cols) > max_side:
        scale = max_side / max(rows, cols)
        size = (max(1, min(max_side, round(cols * scale))),
                max(1, min(max_side, round(rows * scale))))
        decoded = cv2.resize(decoded, size, interpolation=cv2.INTER_AREA)
    gray = _eight_bits(decoded, bits)
    if min(gray.shape) < MIN_SIDE:  # the file's own size first: it is what one can check
        raise InvalidImageError(
            f"image is {width}x{height} px, {gray.shape[1]}x{gray.shape[0]} px once shrunk "
            f"to {max_side} px on its longest side; each side must be at least {MIN_SIDE} px"
        )
    return gray


def read_image_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The content of one's own image file, for :func:`decode_image_offline`.

    Only a regular file is read (symbolic links are followed): a FIFO, a device (such as
    ``/dev/zero``), a socket or a folder is refused before any byte is read, so a listed
    FIFO cannot block and a device cannot fill memory. At most ``max_bytes`` + 1 bytes
    are read (default ``OFFLINE_MAX_ENCODED_BYTES``, looked up at each call), so a file
    that grows while read is still bounded.

    Raises:
        OSError: the file cannot be opened or read (missing, no permission, a symbolic
            link loop), is a folder (``IsADirectoryError``) or is no regular file
            (``errno.EINVAL``, ``strerror`` says which kind).
        InvalidImageError: the file is larger than ``max_bytes``.
    """
    limit = OFFLINE_MAX_ENCODED_BYTES if max_bytes is None else max_bytes
    _check_regular(path, os.stat(path).st_mode)  # before opening: no FIFO / device opened
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    with open(os.open(path, flags), "rb") as handle:  # O_NONBLOCK: a swapped-in FIFO
        info = os.fstat(handle.fileno())  # the file opened, whatever the path names now
        _check_regular(path, info.st_mode)
        if info.st_size > limit:
            raise InvalidImageError(f"image file is {info.st_size} bytes; the limit is "
                                    f"{limit} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidImageError(f"image file is more than {limit} bytes; the limit is "
                                f"{limit} bytes")
    return data


def _check_regular(path: Path, mode: int) -> None:
    """Raise OSError unless ``mode`` is a regular file's (IsADirectoryError for a folder)."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "of an unknown kind")
    raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))


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
