"""The pass-through tile test splits the frame as ``np.array_split`` does and measures
each tile's texture exactly as the fancy-indexed copy it replaced."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.roi import _texture_fills_frame, _tile_bounds


@pytest.mark.parametrize("length", [4, 5, 7, 8, 9, 13, 64, 127, 128])
def test_tile_bounds_match_array_split(length: int) -> None:
    expected = [(int(r[0]), int(r[-1]) + 1) for r in np.array_split(np.arange(length), 4)]
    assert _tile_bounds(length, 4) == expected


@pytest.mark.parametrize("shape", [(8, 11), (13, 9), (128, 121), (128, 128)])
def test_tile_texture_equals_the_fancy_indexed_measure(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    for scale in (0.5, 2.0, 20.0):  # below, near and above the threshold
        small = (rng.random(shape) * scale).astype(np.float32)
        highpass = small - cv2.GaussianBlur(small, (0, 0), P.ROI_TEXTURE_SIGMA)
        rows = np.array_split(np.arange(shape[0]), 4)
        cols = np.array_split(np.arange(shape[1]), 4)
        lowest = min(float(highpass[np.ix_(r, c)].std()) for r in rows for c in cols)
        assert _texture_fills_frame(small) == (lowest >= P.ROI_PASSTHROUGH_MIN_TILE_TEXTURE)
