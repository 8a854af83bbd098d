"""Tests of identity.synthetic: seeded, varied captures that look like palm ROIs."""

from __future__ import annotations

import numpy as np
import pytest

from identity.roi import looks_like_roi
from identity.synthetic import SyntheticPalms


def test_capture_is_a_128_px_grey_roi() -> None:
    image = SyntheticPalms(seed=1).capture(palm=0, capture=0)
    assert image.shape == (128, 128)
    assert image.dtype == np.uint8
    assert looks_like_roi(image)
    assert 60 < float(image.mean()) < 220


def test_same_seed_gives_identical_captures() -> None:
    a, b = SyntheticPalms(seed=5), SyntheticPalms(seed=5)
    np.testing.assert_array_equal(a.capture(3, 2), b.capture(3, 2))
    np.testing.assert_array_equal(a.palm_image(3), b.palm_image(3))


def test_different_seeds_give_different_palms() -> None:
    a, b = SyntheticPalms(seed=5), SyntheticPalms(seed=6)
    assert not np.array_equal(a.palm_image(0), b.palm_image(0))


def test_captures_of_one_palm_differ_but_correlate_more_than_other_palms() -> None:
    palms = SyntheticPalms(seed=2)
    first, second = palms.capture(0, 0).astype(float), palms.capture(0, 1).astype(float)
    other = palms.capture(1, 0).astype(float)
    assert not np.array_equal(first, second)

    def correlation(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])

    assert correlation(first, second) > correlation(first, other) + 0.2


def test_negative_indices_are_refused() -> None:
    palms = SyntheticPalms(seed=0)
    with pytest.raises(ValueError):
        palms.capture(-1, 0)
    with pytest.raises(ValueError):
        palms.capture(0, -1)
