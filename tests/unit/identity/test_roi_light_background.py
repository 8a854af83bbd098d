"""Hands on a light background: the segmentation takes the darker class as the hand.

A palm photographed on white paper or a light table is darker than its background; the
background still holds most of the image border (identity.roi_segment._otsu), so the
negative is segmented and the ROI lands where it lands on a dark background.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.errors import AcquisitionError
from identity.features import extract_features, feature_params
from identity.matcher import match_score
from identity.roi import RoiResult, extract_roi
from identity.roi_segment import border_fraction, segment_hand
from tests.unit.identity.test_roi import (
    ANGLE_TOLERANCE_DEG,
    angle_between,
    assert_key_points_near,
    drawn_hand,
    hand_mask,
    transformed,
)
from tests.unit.identity.test_roi_keyframe import assert_in_key_frame, cut_hand


def on_light(image: np.ndarray, mask: np.ndarray, background: int, skin_shift: int = 0
             ) -> np.ndarray:
    """``image``'s hand pixels (shifted by ``skin_shift`` grey levels) on a flat
    ``background`` level."""
    hand = image.astype(np.int16) + skin_shift
    return np.clip(np.where(mask > 0, hand, background), 0, 255).astype(np.uint8)


def template(result: RoiResult):
    return extract_features(result.roi, feature_params(result.passthrough)).to_template()


def test_border_fraction_counts_each_edge_pixel_once() -> None:
    binary = np.zeros((10, 20), np.uint8)
    assert border_fraction(binary) == 0.0
    binary[0] = 1  # the top edge: 20 of the 2 * 20 + 2 * 8 = 56 border pixels
    assert border_fraction(binary) == pytest.approx(20 / 56)
    binary[:, 0] = 1  # and the left edge: 8 more
    assert border_fraction(binary) == pytest.approx(29 / 56)
    assert border_fraction(np.ones((10, 20), np.uint8)) == 1.0
    inner = np.zeros((10, 20), np.uint8)
    inner[1:-1, 1:-1] = 1
    assert border_fraction(inner) == 0.0


@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (1, 7)])
def test_border_fraction_of_tiny_images_is_their_mean(shape: tuple[int, int]) -> None:
    binary = np.zeros(shape, np.uint8)
    binary.flat[0] = 1
    assert border_fraction(binary) == pytest.approx(1.0 / binary.size)


@pytest.mark.parametrize(
    ("background", "skin_shift"), [(200, 0), (235, 0), (245, -60), (225, -110)]
)
def test_whole_hand_on_a_light_background_gives_the_dark_background_roi(
    background: int, skin_shift: int
) -> None:
    mask = hand_mask()
    dark = extract_roi(drawn_hand())
    light = extract_roi(on_light(drawn_hand(), mask, background, skin_shift))
    assert not light.passthrough
    assert light.centre == pytest.approx(dark.centre, abs=1.0)
    assert light.side == pytest.approx(dark.side, rel=0.01)
    assert angle_between(light.angle_deg, dark.angle_deg) < 1.0
    assert dark.key_points is not None
    assert_key_points_near(light, np.array(dark.key_points), 3)
    # Same palm, same place: the templates match far above the identification floor.
    assert match_score(template(light), template(dark)) > P.IDENTIFY_THRESHOLD + 0.2


@pytest.mark.parametrize("degrees", [-120.0, 35.0, 160.0])
def test_rotated_hand_on_a_light_background_is_turned_fingers_up(degrees: float) -> None:
    matrix = cv2.getRotationMatrix2D((320.0, 260.0), degrees, 0.8)
    image, points = transformed(matrix)
    mask = cv2.warpAffine(hand_mask(), matrix, (640, 480), flags=cv2.INTER_NEAREST)
    result = extract_roi(on_light(image, mask, 230, -40))
    assert_key_points_near(result, points, 12)
    assert angle_between(result.angle_deg, -degrees) < ANGLE_TOLERANCE_DEG


def test_left_hand_on_a_light_background_is_mirrored() -> None:
    mask = hand_mask()
    right = extract_roi(on_light(drawn_hand(), mask, 230))
    left = extract_roi(np.ascontiguousarray(np.fliplr(on_light(drawn_hand(), mask, 230))))
    assert angle_between(left.angle_deg, -right.angle_deg) < 5


def test_fingers_cut_by_the_frame_on_a_light_background_use_the_key_frame() -> None:
    image, points = cut_hand()
    mask = hand_mask()[150:]
    result = extract_roi(on_light(image, mask, 225, -50))
    assert_in_key_frame(result)
    assert_key_points_near(result, points, 12)


def test_segmentation_of_a_light_background_hand_masks_the_hand() -> None:
    mask = hand_mask()
    hand = segment_hand(on_light(drawn_hand(), mask, 230))
    overlap = float((hand.mask & mask).sum()) / float(mask.sum())
    assert overlap > 0.95 and float(hand.mask.mean()) < 1.1 * float(mask.mean())


@pytest.mark.parametrize("level", [150, 200, 240])
def test_blank_light_frame_still_fails_to_acquire(level: int) -> None:
    with pytest.raises(AcquisitionError, match="no hand found"):
        extract_roi(np.full((300, 400), level, np.uint8))


@pytest.mark.parametrize("seed", range(4))
def test_light_paper_with_noise_never_crashes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    paper = np.clip(220 + cv2.GaussianBlur(rng.normal(0, 20, (360, 480)), (0, 0), 4.0), 0, 255)
    try:
        result = extract_roi(paper.astype(np.uint8))
    except AcquisitionError as error:
        assert error.reason
    else:
        assert result.roi.shape == (P.ROI_SIZE, P.ROI_SIZE)


def test_hand_on_a_blown_out_white_background_is_acquired() -> None:
    # More than half of the frame at 255, but all of it background: the hand is checked.
    mask = hand_mask()
    dark = extract_roi(drawn_hand())
    white = extract_roi(on_light(drawn_hand(), mask, 255))
    assert white.centre == pytest.approx(dark.centre, abs=1.0)
    assert match_score(template(white), template(dark)) > P.IDENTIFY_THRESHOLD + 0.2


def test_blown_out_palm_on_white_gives_no_roi() -> None:
    # The palm as white as the paper: whatever the reason, no ROI is cut from it.
    mask = hand_mask()
    image = on_light(drawn_hand(), mask, 255)
    palm = np.zeros_like(mask)
    cv2.ellipse(palm, (320, 300), (100, 110), 0, 0, 360, 1, cv2.FILLED)
    image[palm > 0] = 253
    with pytest.raises(AcquisitionError):
        extract_roi(image)


@pytest.mark.parametrize("level", [250, 255])
def test_frame_saturated_everywhere_is_still_refused_as_saturated(level: int) -> None:
    with pytest.raises(AcquisitionError, match="saturated"):
        extract_roi(np.full((300, 400), level, np.uint8))
    image = np.full((300, 400), level, np.uint8)
    image[140:160, 190:210] = 100  # a speck: no room for a hand
    with pytest.raises(AcquisitionError, match="saturated"):
        extract_roi(image)


def test_square_photo_of_a_hand_on_a_light_background_is_not_taken_for_a_roi() -> None:
    # Square and without dark pixels, as a ROI is: the flat paper around the hand sends
    # it to the whole-hand path instead of failing it as "blurred".
    mask = hand_mask()[:, 80:560]
    image = np.ascontiguousarray(on_light(drawn_hand()[:, 80:560], mask, 230))
    dark = extract_roi(np.ascontiguousarray(drawn_hand()[:, 80:560]))
    result = extract_roi(image)
    assert not result.passthrough
    assert result.centre == pytest.approx(dark.centre, abs=1.0)
    assert match_score(template(result), template(dark)) > P.IDENTIFY_THRESHOLD + 0.2


@pytest.mark.parametrize("levels", [8, 16])
def test_roi_stored_at_very_low_contrast_is_not_cut_as_a_hand(levels: int) -> None:
    # A ROI squeezed into a few grey levels loses texture in some tiles; it must fail to
    # acquire, not be searched for "finger valleys" in its own palm texture.
    from identity.synthetic import SyntheticPalms

    roi = SyntheticPalms(seed=5).capture(0, 0).astype(np.float32)
    squeezed = (110 + (roi - roi.min()) * levels / max(float(np.ptp(roi)), 1.0)).astype(np.uint8)
    with pytest.raises(AcquisitionError, match="^blurred or low contrast"):
        extract_roi(squeezed)
