"""The pass-through ROI checks' fast paths decide exactly as the numpy measures they
stand for (identity.roi_quality.LevelCounts, ensure_palm_texture; identity.roi
_frame_is_palm)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.errors import AcquisitionError
from identity.roi import _frame_is_palm
from identity.roi_quality import (
    LevelCounts,
    _coherence_estimate,
    check_palm_texture,
    ensure_palm_texture,
    orientation_coherence,
)


def test_level_counts_equal_numpy() -> None:
    rng = np.random.default_rng(5)
    for trial in range(600):
        n = int(rng.integers(1, 5000))
        lo = int(rng.integers(0, 256))
        hi = int(rng.integers(lo, 256))
        pixels = rng.integers(lo, hi + 1, n, dtype=np.uint8)
        if trial % 2:
            pixels = pixels[: n - n % 7].reshape(7, -1) if n >= 7 else pixels
        levels = LevelCounts(pixels)
        for q in (99, 1, 90, 50, 0, 100, 2.5, (1, 99)):
            expected = tuple(float(v) for v in np.atleast_1d(np.percentile(pixels, q)))
            assert levels.percentile(q) == expected
        assert levels.mean() == float(pixels.mean())
        for level in (0, 1, 128, 250, 255, 256):
            assert levels.fraction_at_least(level) == float(np.mean(pixels >= level))


def test_level_counts_of_no_pixels() -> None:
    levels = LevelCounts(np.zeros(0, np.uint8))
    assert levels.mean() == 0.0 and levels.fraction_at_least(250) == 0.0
    with pytest.raises(ValueError):
        levels.percentile(99)


def _exact_frame_is_palm(small: np.ndarray) -> bool:
    blurred = cv2.GaussianBlur(small, (0, 0), P.ROI_ANALYSIS_BLUR_SIGMA)
    dark_level = P.ROI_DARK_LEVEL_OF_P90 * float(np.percentile(blurred, 90))
    return float(np.mean(blurred < dark_level)) <= P.ROI_PASSTHROUGH_MAX_DARK_FRACTION


@pytest.mark.parametrize("shape", [(8, 8), (13, 9), (128, 121), (128, 128)])
def test_frame_is_palm_equals_the_percentile_measure(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(11)
    rows = np.arange(shape[0])
    for dark in np.linspace(0.0, 0.4, 41):  # dark band around the 0.2 limit
        for level in (0.0, 10.0, 60.0):
            small = (rng.random(shape) * 40 + 120).astype(np.float32)
            small[rows < dark * shape[0]] = level
            if level == 0.0:
                small[rows >= 0.8 * shape[0]] = 255.0  # saturated top decile: no bracket
            assert _frame_is_palm(small) == _exact_frame_is_palm(small)


def _raised(check, image):  # type: ignore[no-untyped-def]
    try:
        check(image)
    except AcquisitionError as error:
        return error.reason
    return None


@pytest.mark.parametrize("shape", [(8, 8), (9, 13), (37, 53), (120, 128), (128, 128)])
def test_ensure_palm_texture_raises_as_check_palm_texture(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    lines = (np.sin(x * 0.7 + y * 0.2) * 40 + 120).astype(np.float32)
    for mix in np.linspace(0.0, 1.0, 21):  # from noise to lines, across the threshold
        noise = (rng.random(shape) * 80 + 80).astype(np.float32)
        image = (mix * lines + (1 - mix) * noise).astype(np.float32)
        assert abs(_coherence_estimate(image) - orientation_coherence(image)) < 1e-5
        assert _raised(ensure_palm_texture, image) == _raised(check_palm_texture, image)
    flat = np.full(shape, 90, np.float32)
    assert _raised(ensure_palm_texture, flat) == _raised(check_palm_texture, flat)


def test_percentile_bounds_hold_numpy_percentile() -> None:
    rng = np.random.default_rng(9)
    for _ in range(500):
        n = int(rng.integers(1, 3000))
        pixels = rng.integers(0, 256, n, dtype=np.uint8) // int(rng.integers(1, 64))
        levels = LevelCounts(pixels)
        for q in (1, 90, 99):
            low, high = levels.percentile_bounds(q)
            assert low <= float(np.percentile(pixels, q)) <= high


@pytest.mark.parametrize("spread", [0, 1, 2, 20, 60, 63, 64, 65, 120, 255])
def test_normalise_contrast_equals_the_percentile_stretch(spread: int) -> None:
    from identity.roi_quality import normalise_contrast

    rng = np.random.default_rng(spread)
    for _ in range(20):
        roi = (rng.integers(0, spread + 1, (128, 128)) + 100 - spread // 2).clip(0, 255)
        roi = roi.astype(np.uint8)
        low, high = (float(v) for v in np.percentile(roi, (1, 99)))
        expected = roi
        if not (high - low >= P.ROI_MIN_DYNAMIC_RANGE or high - low < 1.0):
            gain = P.ROI_NORMALISED_RANGE / (high - low)
            stretched = (roi.astype(np.float32) - (low + high) / 2.0) * gain + 128.0
            expected = np.clip(stretched, 0, 255).astype(np.uint8)
        assert np.array_equal(normalise_contrast(roi), expected)


def _exact_texture_fills_frame(small: np.ndarray) -> bool:
    from identity.roi import _tile_bounds
    highpass = small - cv2.GaussianBlur(small, (0, 0), P.ROI_TEXTURE_SIGMA)
    rows, cols = _tile_bounds(small.shape[0], 4), _tile_bounds(small.shape[1], 4)
    return min(float(np.ascontiguousarray(highpass[r0:r1, c0:c1]).std())
               for r0, r1 in rows for c0, c1 in cols) >= P.ROI_PASSTHROUGH_MIN_TILE_TEXTURE


@pytest.mark.parametrize("shape", [(16, 16), (13, 9), (128, 121), (128, 128)])
def test_texture_fills_frame_equals_the_per_tile_std(shape: tuple[int, int]) -> None:
    """Texture swept through the threshold, one tile fainter than the rest: the float64
    estimate decides as numpy's per-tile std does, also right at the threshold."""
    from identity.roi import _texture_fills_frame, _tile_stds
    rng = np.random.default_rng(3)
    noise = rng.normal(size=shape).astype(np.float32)
    decided = set()
    for amplitude in np.linspace(0.2, 3.0, 57):
        small = (128 + amplitude * noise).astype(np.float32)
        small[: shape[0] // 4, : shape[1] // 4] *= 0.999  # one tile a little fainter
        want = _exact_texture_fills_frame(small)
        assert _texture_fills_frame(small) == want
        decided.add(want)
    assert decided == {True, False}
    from identity.roi import _tile_bounds
    highpass = noise - cv2.GaussianBlur(noise, (0, 0), P.ROI_TEXTURE_SIGMA)
    rows, cols = _tile_bounds(shape[0], 4), _tile_bounds(shape[1], 4)
    exact = np.array([[float(np.ascontiguousarray(highpass[r0:r1, c0:c1]).std())
                       for c0, c1 in cols] for r0, r1 in rows])
    assert np.allclose(_tile_stds(highpass, rows, cols), exact, rtol=1e-5)
