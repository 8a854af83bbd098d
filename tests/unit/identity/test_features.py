"""Feature extraction (CompCode + OrdinalCode): code layout, angular Hamming property,
mask, the ordinal code, PalmCode validation, errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from identity import params
from identity.errors import InvalidImageError
from identity.features import (
    _ORIENTATION_BITS,
    DEFAULT_FEATURE_PARAMS,
    FeatureParams,
    PalmCode,
    extract_features,
)
from identity.ordinal import extract_ordinal
from identity.synthetic import SyntheticPalms
from identity.template import Template


def test_hamming_between_orientation_codes_is_angular_distance() -> None:
    for i in range(6):
        for j in range(6):
            hamming = int(np.sum(_ORIENTATION_BITS[i] ^ _ORIENTATION_BITS[j]))
            assert hamming == min(abs(i - j), 6 - abs(i - j))


def test_code_shape_and_template() -> None:
    code = extract_features(SyntheticPalms(1).capture(0, 0))
    assert code.grid == (32, 32)
    # 3 rotations, then 5 refinement grids of each (half a cell down, right, both; sheared
    # by +0.05 and -0.05)
    assert code.code.dtype == np.bool_ and code.code.shape == (18, 3, 32, 32)
    assert code.mask.shape == (18, 32, 32)
    template = code.to_template()
    assert template.variants == 18 and template.rotation_variants == 3 and template.refined
    stored = template.rotations_only()
    assert stored.variants == 3 and not stored.refined and stored.rotations_only() is stored
    for v in range(3):
        assert np.array_equal(stored.code_bits(v), template.code_bits(v))
        assert np.array_equal(stored.mask_bits(v), template.mask_bits(v))
        assert np.array_equal(stored.ordinal_bits(v), template.ordinal_bits(v))
    assert Template.from_bytes(stored.to_bytes()) == stored
    assert len(template.reference_code) == 384
    assert template.code_bits().shape == (3, 32, 32)
    assert template.mask_bits().mean() > 0.9
    # rotated variants lose the corner cells brought in from outside the ROI
    assert template.mask_bits(1).mean() < template.mask_bits(0).mean()
    assert not template.mask_bits(1)[0, 0]


def _line_image(angle: float) -> np.ndarray:
    img = np.full((128, 128), 180, dtype=np.uint8)
    for offset in range(-120, 121, 12):  # parallel dark lines at ``angle``
        c, s = math.cos(angle), math.sin(angle)
        cx, cy = 64 - s * offset, 64 + c * offset
        p1 = (int(cx - 200 * c), int(cy - 200 * s))
        p2 = (int(cx + 200 * c), int(cy + 200 * s))
        cv2.line(img, p1, p2, 60, 2)
    return img


def test_line_orientation_drives_the_winning_code() -> None:
    codes = [extract_features(_line_image(j * math.pi / 6)).to_template() for j in range(6)]
    # the dominant cell code differs between line orientations 90 degrees apart
    modes = []
    for t in codes:
        bits = t.code_bits().reshape(3, -1).T
        values, counts = np.unique(bits, axis=0, return_counts=True)
        modes.append(tuple(values[np.argmax(counts)]))
    assert modes[0] != modes[3]
    assert len(set(modes)) == 6


def test_flat_image_is_masked_out() -> None:
    code = extract_features(np.full((128, 128), 128, dtype=np.uint8)).to_template()
    assert not code.mask_bits().any()


def test_saturated_image_is_masked_out() -> None:
    code = extract_features(np.full((128, 128), 255, dtype=np.uint8)).to_template()
    assert not code.mask_bits().any()


@pytest.mark.parametrize(
    "bad",
    [np.zeros((128, 64), np.uint8), np.zeros((128, 128), np.float32), np.zeros((8, 8), np.uint8)],
)
def test_bad_roi_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidImageError):
        extract_features(bad)


def test_ordinal_code_is_filled_and_templated() -> None:
    roi = SyntheticPalms(1).capture(2, 1)
    code = extract_features(roi)
    assert code.ordinal.dtype == np.bool_ and code.ordinal.shape == code.code.shape
    assert np.array_equal(code.ordinal[:3], extract_ordinal(roi))  # the rotations
    assert np.array_equal(code.ordinal, extract_ordinal(
        roi, refine_offsets_cells=params.FEATURE_REFINE_OFFSETS_CELLS,
        refine_warps=DEFAULT_FEATURE_PARAMS.refine_warps))
    assert not code.ordinal.flags.writeable
    template = code.to_template()
    assert template.has_ordinal
    for v in range(template.variants):
        assert np.array_equal(template.ordinal_bits(v), code.ordinal[v])
        assert np.array_equal(template.code_bits(v), code.code[v])
    # the ordinal code follows the extractor's rotations and grid
    few = extract_features(roi, FeatureParams(grid_size=16, rotations_deg=(0.0, 3.0)))
    assert few.ordinal.shape == (12, 3, 16, 16)
    plain = extract_features(roi, FeatureParams(grid_size=16, rotations_deg=(0.0, 3.0),
                                                refine_offsets_cells=(), refine_shears=()))
    assert plain.ordinal.shape == (2, 3, 16, 16)
    assert np.array_equal(plain.code, few.code[:2]) and np.array_equal(plain.mask, few.mask[:2])


def test_palm_code_validates_the_ordinal() -> None:
    code = np.zeros((3, 3, 8, 8), bool)
    mask = np.ones((3, 8, 8), bool)
    assert PalmCode(code, mask, np.zeros_like(code)).grid == (8, 8)
    bads: list[np.ndarray] = [np.zeros((2, 3, 8, 8), bool), np.zeros((3, 3, 8, 7), bool),
                              np.zeros((3, 8, 8), bool), np.zeros((3, 3, 8, 8), np.uint8)]
    for bad in bads:
        with pytest.raises(ValueError, match="ordinal"):
            PalmCode(code, mask, bad)
