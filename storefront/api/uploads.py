"""Reading uploaded files with a size limit."""

from __future__ import annotations

from fastapi import UploadFile

from storefront.errors import InvalidInput

MAX_IMAGE_BYTES = 10 * 1024 * 1024


async def read_image(upload: UploadFile) -> bytes:
    """The bytes of one uploaded image; raises InvalidInput when empty or over 10 MiB."""
    data = await upload.read(MAX_IMAGE_BYTES + 1)
    if not data:
        raise InvalidInput(f"uploaded file {upload.filename!r} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"uploaded file {upload.filename!r} exceeds {MAX_IMAGE_BYTES} bytes")
    return data
