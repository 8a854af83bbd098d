"""Tests of identity.roi on images made here: ROI pass-through, drawn hands, bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity.errors import AcquisitionError, InvalidImageError
from identity.params import ROI_SIZE
from identity.roi import RoiResult, extract_roi, looks_like_roi
from identity.synthetic import SyntheticPalms

PALM_CENTRE = (320, 300)  # (x, y) px of the drawn palm ellipse in a 480x640 frame


def drawn_hand(seed: int = 0) -> np.ndarray:
    """A right hand, fingers up: textured palm ellipse, four fingers and a thumb on black."""
    mask = np.zeros((480, 640), np.uint8)
    cv2.ellipse(mask, PALM_CENTRE, (95, 110), 0, 0, 360, 1, cv2.FILLED)
    for x in (245, 295, 345, 395):  # fingers, 34 px wide, spread apart
        cv2.rectangle(mask, (x - 17, 40), (x + 17, 230), 1, cv2.FILLED)
    cv2.ellipse(mask, (205, 300), (90, 20), -35, 0, 360, 1, cv2.FILLED)  # thumb
    cv2.rectangle(mask, (250, 380), (390, 479), 1, cv2.FILLED)  # wrist, leaving the frame
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 25, mask.shape), (0, 0), 1.0)
    return np.where(mask > 0, np.clip(170 + texture, 0, 255), 12).astype(np.uint8)


def angle_between(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_synthetic_roi_passes_through() -> None:
    roi = SyntheticPalms(seed=3).capture(0, 0)
    result = extract_roi(roi)
    assert isinstance(result, RoiResult)
    assert result.passthrough
    assert result.roi.shape == (ROI_SIZE, ROI_SIZE) and result.roi.dtype == np.uint8
    assert result.centre is None and result.radius is None


def test_larger_roi_is_resized_on_pass_through() -> None:
    roi = cv2.resize(SyntheticPalms(seed=3).capture(1, 0), (200, 200)).astype(np.uint8)
    result = extract_roi(roi)
    assert result.passthrough
    assert result.roi.shape == (ROI_SIZE, ROI_SIZE)


def test_low_contrast_roi_is_stretched() -> None:
    roi = SyntheticPalms(seed=3).capture(2, 0).astype(float)
    flat = (120 + (roi - roi.mean()) * 0.25).astype(np.uint8)
    result = extract_roi(flat)
    low, high = np.percentile(result.roi, (1, 99))
    assert high - low > np.ptp(np.percentile(flat, (1, 99))) * 2


def test_drawn_hand_gives_an_upright_roi_centred_on_the_palm() -> None:
    hand = drawn_hand()
    assert not looks_like_roi(hand)
    steps: list[str] = []
    result = extract_roi(hand, debug=lambda name, image: steps.append(name))
    assert not result.passthrough
    assert result.roi.shape == (ROI_SIZE, ROI_SIZE) and result.roi.dtype == np.uint8
    assert result.centre is not None and result.radius is not None
    assert np.hypot(result.centre[0] - 320, result.centre[1] - 300) < 25
    assert 80 < result.radius < 115
    assert angle_between(result.angle_deg, 0.0) < 20
    assert steps[0] == "input" and steps[-1] == "roi" and "mask" in steps


@pytest.mark.parametrize(("turns", "expected_angle"), [(1, -90.0), (2, 180.0), (3, 90.0)])
def test_rotated_hand_is_turned_fingers_up(turns: int, expected_angle: float) -> None:
    # np.rot90 turns counter-clockwise, so turning back needs a clockwise (negative) angle.
    result = extract_roi(np.ascontiguousarray(np.rot90(drawn_hand(), turns)))
    assert angle_between(result.angle_deg, expected_angle) < 20


def test_left_hand_works_like_the_right_one() -> None:
    right = extract_roi(drawn_hand())
    left = extract_roi(np.ascontiguousarray(np.fliplr(drawn_hand())))
    assert left.centre is not None and right.centre is not None
    assert abs(left.centre[0] - (639 - right.centre[0])) < 5
    assert angle_between(left.angle_deg, -right.angle_deg) < 5


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((480, 640), np.uint8), "too dark"),
        (np.full((480, 640), 255, np.uint8), "saturated"),
        (np.full((128, 128), 128, np.uint8), "blurred"),
        (np.full((300, 400), 128, np.uint8), "no hand found"),
        (np.zeros((10, 10), np.uint8), "too small"),
        (np.zeros((0, 0), np.uint8), "too small"),
    ],
)
def test_unusable_images_fail_to_acquire(image: np.ndarray, reason: str) -> None:
    with pytest.raises(AcquisitionError, match=reason):
        extract_roi(image)


def test_blurred_roi_fails_to_acquire() -> None:
    blurred = cv2.GaussianBlur(SyntheticPalms(seed=4).capture(0, 0), (0, 0), 3.0).astype(np.uint8)
    with pytest.raises(AcquisitionError, match="blurred"):
        extract_roi(blurred)


def test_palm_out_of_frame_fails_to_acquire() -> None:
    cut = drawn_hand()[:, 260:]  # the frame cuts through the middle of the palm
    with pytest.raises(AcquisitionError, match="out of frame"):
        extract_roi(np.ascontiguousarray(cut))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(64, 64), (128, 128), (300, 400), (33, 500)])
def test_noise_never_crashes(seed: int, shape: tuple[int, int]) -> None:
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    try:
        result = extract_roi(image)
    except AcquisitionError as error:
        assert error.reason
    else:
        assert result.roi.shape == (ROI_SIZE, ROI_SIZE)


def test_non_grey_input_is_an_invalid_image() -> None:
    with pytest.raises(InvalidImageError):
        extract_roi(np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(InvalidImageError):
        extract_roi(np.zeros((128, 128), np.float32))
