"""Oblong palm ROIs (e.g. 160 x 128 px) pass through as their centred square.

Before, a frame longer than ROI_PASSTHROUGH_MAX_ASPECT went to the whole-hand path,
which found "finger valleys" in the palm texture: most failed to acquire, and the rest
gave templates that matched nothing.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.errors import AcquisitionError
from identity.features import extract_features, feature_params
from identity.matcher import match_score
from identity.roi import extract_roi
from identity.synthetic import SyntheticPalms
from tests.unit.identity.test_roi import drawn_hand


def template(image: np.ndarray):
    result = extract_roi(image)
    return result, extract_features(result.roi, feature_params(result.passthrough)).to_template()


@pytest.mark.parametrize("size", [(160, 128), (128, 160), (165, 128)])
def test_oblong_roi_passes_through_and_matches_its_own_kind(size: tuple[int, int]) -> None:
    palms = SyntheticPalms(seed=11)
    first, t1 = template(cv2.resize(palms.capture(0, 0), size))
    second, t2 = template(cv2.resize(palms.capture(0, 1), size))
    other, t3 = template(cv2.resize(palms.capture(1, 0), size))
    assert first.passthrough and second.passthrough and other.passthrough
    assert first.roi.shape == (P.ROI_SIZE, P.ROI_SIZE)
    assert match_score(t1, t2) > P.IDENTIFY_THRESHOLD
    assert match_score(t1, t2) > match_score(t1, t3) + 0.1


def test_centred_square_is_what_passes() -> None:
    roi = SyntheticPalms(seed=11).capture(0, 0)
    oblong = cv2.resize(roi, (160, 128))
    from_oblong = extract_roi(oblong).roi
    from_square = extract_roi(np.ascontiguousarray(oblong[:, 16:144])).roi
    assert np.array_equal(from_oblong, from_square)


@pytest.mark.parametrize("width", [171, 192, 256])  # 4:3 and wider: hand photos' shapes
def test_frame_beyond_the_oblong_limit_is_not_a_roi(width: int) -> None:
    strip = cv2.resize(SyntheticPalms(seed=11).capture(0, 0), (width, 128))
    try:
        result = extract_roi(strip)
    except AcquisitionError as error:
        assert error.reason
    else:
        assert not result.passthrough


def test_whole_hand_photo_is_not_taken_for_an_oblong_roi() -> None:
    result = extract_roi(drawn_hand())  # 640 x 480, dark background
    assert not result.passthrough
