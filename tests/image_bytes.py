"""Hand-made image files for decoder tests: headers that declare sizes their data lacks."""

from __future__ import annotations

import zlib


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


def png_header(width: int, height: int) -> bytes:
    """A PNG (8-bit grey) declaring ``width`` x ``height`` px with a few kB of deflate
    data: a decompression bomb's header, or a truncated image when decoded."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 100_000)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
