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
FINGER_BASES = ((250, 215), (300, 195), (350, 195), (400, 215))  # index .. little
# Where the test draws the index-middle and ring-little valleys: between adjacent bases.
DRAWN_KEY_POINTS = np.array([[275.0, 205.0], [375.0, 205.0]])


def hand_mask() -> np.ndarray:
    """0/1 mask of a right hand, fingers up: palm ellipse, four splayed fingers, thumb."""
    mask = np.zeros((480, 640), np.uint8)
    cv2.ellipse(mask, PALM_CENTRE, (100, 110), 0, 0, 360, 1, cv2.FILLED)
    for (x, y), degrees, length in zip(
        FINGER_BASES, (-12, -4, 4, 12), (150, 170, 160, 120), strict=True
    ):
        tip = np.array([x, y]) + length * np.array(
            [np.sin(np.radians(degrees)), -np.cos(np.radians(degrees))]
        )
        cv2.line(mask, (x, y), (int(tip[0]), int(tip[1])), 1, 36)
    cv2.line(mask, (235, 330), (140, 250), 1, 44)  # thumb
    cv2.rectangle(mask, (250, 380), (390, 479), 1, cv2.FILLED)  # wrist, leaving the frame
    return mask


def drawn_hand(seed: int = 0, mask: np.ndarray | None = None) -> np.ndarray:
    """The drawn hand as a textured grey image on a dark background."""
    mask = hand_mask() if mask is None else mask
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.normal(0, 25, mask.shape), (0, 0), 1.0)
    return np.where(mask > 0, np.clip(170 + texture, 0, 255), 12).astype(np.uint8)


def transformed(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The drawn hand moved by a 2x3 affine ``matrix``, and its moved key points."""
    mask = cv2.warpAffine(hand_mask(), matrix, (640, 480), flags=cv2.INTER_NEAREST)
    points = DRAWN_KEY_POINTS @ matrix[:, :2].T + matrix[:, 2]
    return drawn_hand(mask=mask), points


# The finger direction is the mean over all finger pixels, thumb included: on the drawn
# hand it leans ~10.6 degrees towards the thumb (the same for every pose), so angles
# are checked to within ANGLE_TOLERANCE_DEG (was 8 with the key-line direction).
ANGLE_TOLERANCE_DEG = 12.0


def assert_key_points_near(result: RoiResult, expected: np.ndarray, tolerance: float) -> None:
    assert result.key_points is not None
    found = np.array(result.key_points)
    error = min(
        np.abs(found - expected).max(), np.abs(found[::-1] - expected).max()
    )  # either order
    assert error < tolerance, (found, expected)


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


def test_drawn_hand_gives_an_upright_roi_from_its_key_points() -> None:
    hand = drawn_hand()
    assert not looks_like_roi(hand)
    steps: list[str] = []
    result = extract_roi(hand, debug=lambda name, image: steps.append(name))
    assert not result.passthrough
    assert result.roi.shape == (ROI_SIZE, ROI_SIZE) and result.roi.dtype == np.uint8
    assert_key_points_near(result, DRAWN_KEY_POINTS, 12)
    assert result.centre is not None and result.radius is not None
    # The ROI square is centred on the palm's inscribed circle (ROI_CIRCLE_SHIFT = 0),
    # whose centre lies near the drawn palm ellipse's centre.
    assert np.hypot(result.centre[0] - PALM_CENTRE[0], result.centre[1] - PALM_CENTRE[1]) < 20
    assert result.side is not None and result.side > 100
    assert angle_between(result.angle_deg, 0.0) < ANGLE_TOLERANCE_DEG
    assert steps[0] == "input" and steps[-1] == "roi" and "keypoints" in steps


@pytest.mark.parametrize("degrees", [-135.0, -60.0, 25.0, 90.0, 170.0])
def test_rotated_hand_is_turned_fingers_up(degrees: float) -> None:
    matrix = cv2.getRotationMatrix2D((320.0, 260.0), degrees, 0.8)
    image, points = transformed(matrix)
    result = extract_roi(image)
    assert_key_points_near(result, points, 12)
    # getRotationMatrix2D turns counter-clockwise; turning back is the opposite angle.
    assert angle_between(result.angle_deg, -degrees) < ANGLE_TOLERANCE_DEG


@pytest.mark.parametrize(("dx", "dy"), [(-120, 0), (110, 30), (0, 40)])
def test_shifted_hand_gives_the_same_roi(dx: int, dy: int) -> None:
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    image, points = transformed(matrix)
    result = extract_roi(image)
    assert_key_points_near(result, points, 12)
    assert angle_between(result.angle_deg, 0.0) < ANGLE_TOLERANCE_DEG


def test_left_hand_gives_the_mirrored_roi() -> None:
    right = extract_roi(drawn_hand())
    left = extract_roi(np.ascontiguousarray(np.fliplr(drawn_hand())))
    mirrored = DRAWN_KEY_POINTS * [-1, 1] + [639, 0]
    assert_key_points_near(left, mirrored, 12)
    assert angle_between(left.angle_deg, -right.angle_deg) < 5
    correlation = np.corrcoef(left.roi.ravel(), np.fliplr(right.roi).ravel())[0, 1]
    assert correlation > 0.5


def test_partly_occluded_hand_still_gives_its_key_points() -> None:
    mask = hand_mask()
    mask[:, :175] = 0  # thumb tip out of the frame
    result = extract_roi(drawn_hand(mask=mask))
    assert_key_points_near(result, DRAWN_KEY_POINTS, 12)


def test_closed_fingers_fail_to_acquire() -> None:
    mask = np.zeros((480, 640), np.uint8)
    # Palm and fingers pressed together into one convex outline, no valley anywhere.
    cv2.ellipse(mask, (320, 330), (100, 300), 0, 0, 360, 1, cv2.FILLED)
    with pytest.raises(AcquisitionError, match="fingers closed|no palm found"):
        extract_roi(drawn_hand(mask=mask))


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


def test_wrist_notches_are_not_taken_for_finger_valleys() -> None:
    mask = hand_mask()
    for x in (250, 390):  # deep notches on both sides of the wrist
        cv2.circle(mask, (x, 430), 28, 0, cv2.FILLED)
    result = extract_roi(drawn_hand(mask=mask))
    assert_key_points_near(result, DRAWN_KEY_POINTS, tolerance=12.0)


def test_fingers_cut_by_the_frame_still_give_their_valleys() -> None:
    # A contact scanner frames the palm only: the fingers leave the image, so one
    # convexity defect spans all the finger gaps and must be split into them.
    top = 150
    result = extract_roi(drawn_hand()[top:])
    assert_key_points_near(result, DRAWN_KEY_POINTS - [0.0, top], tolerance=12.0)
