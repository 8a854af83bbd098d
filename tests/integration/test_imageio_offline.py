"""Offline decoding of large images (identity.imageio.decode_image_offline): full-resolution
phone photos are refused as uploads but decode, shrunk, for evaluation; decompression
bombs are refused from the header."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from image_bytes import png_header

from identity.errors import InvalidImageError
from identity.imageio import (
    MAX_PIXELS,
    OFFLINE_MAX_PIXELS,
    OFFLINE_MAX_SIDE,
    decode_image,
    decode_image_offline,
)
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=3)


def _eight_bit(palm: int = 0) -> np.ndarray:
    return np.clip(np.rint(PALMS.palm_image(palm)), 0, 255).astype(np.uint8)


# --- large images: offline decoding -------------------------------------------------------


def _big_scene(height: int, width: int) -> np.ndarray:
    """A smooth grey scene (a palm image stretched over the frame) of the given size."""
    small = _eight_bit(1)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def phone_photo() -> np.ndarray:
    return _big_scene(6000, 8000)  # 48 MP


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_48_megapixel_photo_is_refused_for_upload_but_decodes_offline(
    phone_photo: np.ndarray, extension: str
) -> None:
    ok, encoded = cv2.imencode(extension, phone_photo)
    assert ok
    data = encoded.tobytes()
    with pytest.raises(InvalidImageError, match=f"the limit is {MAX_PIXELS}"):
        decode_image(data)
    decoded = decode_image_offline(data)
    assert decoded.dtype == np.uint8
    assert decoded.shape == (OFFLINE_MAX_SIDE * 3 // 4, OFFLINE_MAX_SIDE)
    expected = cv2.resize(phone_photo, (decoded.shape[1], decoded.shape[0]),
                          interpolation=cv2.INTER_AREA)
    assert float(np.abs(decoded.astype(int) - expected.astype(int)).mean()) < 1.5


def test_offline_max_side_is_a_parameter(phone_photo: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", phone_photo)
    assert ok
    assert decode_image_offline(encoded.tobytes(), max_side=1000).shape == (750, 1000)
    with pytest.raises(ValueError, match="max_side"):
        decode_image_offline(encoded.tobytes(), max_side=10)


def test_jpeg_offline_decode_is_reduced_before_the_full_image_exists(
    phone_photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 scale (never below max_side)."""
    ok, encoded = cv2.imencode(".jpg", phone_photo)
    assert ok
    seen: list[tuple[int, tuple[int, ...]]] = []
    real = cv2.imdecode

    def spy(buffer: np.ndarray, flags: int) -> np.ndarray:
        out = real(buffer, flags)
        seen.append((flags, out.shape))
        return out

    monkeypatch.setattr("identity.imageio.cv2.imdecode", spy)
    assert decode_image_offline(encoded.tobytes(), max_side=1200).shape == (900, 1200)
    assert len(seen) == 1 and seen[0][1] == (1500, 2000)  # 1/4: 8000/4 >= 1200 > 8000/8


def test_offline_decompression_bombs_are_refused_from_the_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*_: object) -> None:
        raise AssertionError("cv2.imdecode called before the size check")

    monkeypatch.setattr("identity.imageio.cv2.imdecode", forbidden)
    with pytest.raises(InvalidImageError, match=f"the limit is {OFFLINE_MAX_PIXELS}"):
        decode_image_offline(png_header(13_400, 13_300))  # 178.2 MP from a few kB
    with pytest.raises(InvalidImageError, match="too many pixels"):
        decode_image_offline(png_header(20_000, 20_000))  # 400 MP: Pillow's limit too


def test_offline_header_limit_refuses_a_200_megapixel_header() -> None:
    """199.8 MP (a 200 MP phone sensor) is over OFFLINE_MAX_PIXELS and Pillow's own
    limit: refused from the header, before any pixel is decoded."""
    with pytest.raises(InvalidImageError, match="pixels"):
        decode_image_offline(png_header(16_320, 12_240))


def test_108_megapixel_header_gets_past_the_size_check() -> None:
    """Within the limit: it reaches pixel decoding (and fails there: truncated data)."""
    with pytest.raises(InvalidImageError, match="not a decodable image") as caught:
        decode_image_offline(png_header(12_000, 9_000))
    assert "pixels" not in caught.value.reason
