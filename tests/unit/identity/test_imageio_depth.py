"""identity.imageio: 16-bit images scaled by the bit depth their data uses (10/12/14/16),
8-bit images decoded exactly as before, and large images decoded for offline use
(:func:`identity.imageio.decode_image_offline`) while uploads keep their limits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity.imageio import (
    decode_image,
    decode_image_offline,
)
from identity.roi import extract_roi
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(77)


def _deep_png(bits: int, palm: int = 0) -> bytes:
    """The synthetic palm (grey levels 0..255, float) as a 16-bit PNG holding ``bits``-bit
    data: each value scaled to the ``bits``-bit range, as a sensor's ADC would give it."""
    ideal = PALMS.palm_image(palm).astype(np.float64)
    top = (1 << bits) - 1
    values = np.clip(np.rint(ideal / 255.0 * top), 0, top).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", values)
    assert ok
    return encoded.tobytes()


def _eight_bit(palm: int = 0) -> np.ndarray:
    return np.clip(np.rint(PALMS.palm_image(palm)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])  # 8: 8-bit data in a 16-bit file
def test_deep_pngs_of_one_palm_decode_to_the_same_eight_bit_image(bits: int) -> None:
    decoded = decode_image(_deep_png(bits))
    assert decoded.dtype == np.uint8 and decoded.shape == (160, 160)
    diff = np.abs(decoded.astype(int) - _eight_bit().astype(int))
    assert int(diff.max()) <= 1  # truncation to 8 bits: at most one grey level
    assert float(diff.mean()) < 1.0


def test_ten_twelve_and_sixteen_bit_decodes_nearly_agree() -> None:
    images = [decode_image(_deep_png(bits)).astype(int) for bits in (10, 12, 16)]
    for other in images[1:]:
        assert int(np.abs(other - images[0]).max()) <= 1


def test_twelve_bit_palm_is_not_too_dark() -> None:
    """The reported defect: a NIR sensor's 12-bit values became 0..15 -> FTA too dark."""
    decoded = decode_image(_deep_png(12))
    assert 120 < float(decoded.mean()) < 200
    extract_roi(decoded)  # acquired (no "too dark" AcquisitionError)


def test_bit_depth_is_the_smallest_of_10_12_14_16_holding_the_maximum() -> None:
    """A 12-bit image whose maximum is 1500 (11 bits) is read as 12-bit: >> 4."""
    values = np.full((80, 80), 1000, np.uint16)
    values[0, 0] = 1500
    ok, encoded = cv2.imencode(".png", values)
    assert ok
    decoded = decode_image(encoded.tobytes())
    assert int(decoded[1, 1]) == 1000 >> 4 and int(decoded[0, 0]) == 1500 >> 4
    values[0, 0] = 4096  # 13 bits: read as 14-bit
    ok, encoded = cv2.imencode(".png", values)
    decoded = decode_image(encoded.tobytes())
    assert int(decoded[1, 1]) == 1000 >> 6 and int(decoded[0, 0]) == 4096 >> 6


def test_sixteen_bit_colour_png_is_scaled_by_its_depth() -> None:
    colour = np.zeros((70, 90, 3), np.uint16)
    colour[..., 1] = 4000  # 12-bit green
    ok, encoded = cv2.imencode(".png", colour)
    assert ok
    decoded = decode_image(encoded.tobytes())
    assert abs(int(decoded[0, 0]) - round(0.587 * 4000) / 16) <= 1


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_eight_bit_images_decode_exactly_as_opencv_grayscale(extension: str,
                                                             channels: int) -> None:
    rng = np.random.default_rng(3)
    shape = (70, 90) if channels == 1 else (70, 90, 3)
    ok, encoded = cv2.imencode(extension, rng.integers(0, 256, shape, dtype=np.uint8))
    assert ok
    expected = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(decode_image(encoded.tobytes()), expected)
    np.testing.assert_array_equal(decode_image_offline(encoded.tobytes()), expected)


def test_deep_offline_decode_equals_upload_decode() -> None:
    data = _deep_png(12)
    np.testing.assert_array_equal(decode_image_offline(data), decode_image(data))


