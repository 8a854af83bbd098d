"""The finger pixels of a hand (an opening with a disc, by distance transforms) against the
morphological opening with OpenCV's elliptical kernel that it replaced."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params
from identity.roi_keypoints import finger_pixels
from identity.roi_segment import Hand
from tests.unit.identity.test_roi import hand_mask


def _hand(mask: np.ndarray, radius: float) -> Hand:
    return Hand(mask=mask.astype(np.uint8), contour=np.zeros((0, 1, 2), np.int32),
                centre=(0.0, 0.0), radius=radius)


def _by_morphology(mask: np.ndarray, radius: float) -> np.ndarray:
    size = max(3, round(params.ROI_FINGER_OPENING * radius) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disc, borderValue=0)
    return (mask > 0) & (opened == 0)


@pytest.mark.parametrize("radius", [60.0, 100.0, 140.0])
def test_the_drawn_hand_loses_its_fingers_as_with_the_elliptical_kernel(radius: float) -> None:
    mask = hand_mask()
    got = finger_pixels(_hand(mask, radius))
    want = _by_morphology(mask, radius)
    assert got.dtype == np.bool_ and got.shape == mask.shape
    assert want.sum() > 5000
    assert (got != want).sum() < 0.03 * want.sum()  # the disc's rim only
    assert not (got & (mask == 0)).any()  # never outside the hand


def test_blobs_agree_with_the_morphological_opening() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        noise = cv2.GaussianBlur(rng.random((240, 320)).astype(np.float32), (0, 0), 9)
        mask = (noise > np.quantile(noise, 0.5)).astype(np.uint8)
        got, want = finger_pixels(_hand(mask, 40.0)), _by_morphology(mask, 40.0)
        # blobs are mostly rim, where the digital ellipse and the Euclidean disc differ
        assert (got != want).sum() <= 0.1 * max(int(want.sum()), 1) + 50


def test_a_hand_leaving_the_frame_is_opened_as_with_a_zero_border() -> None:
    """Outside the image counts as background: a block leaving the frame has its corners
    at the frame edge rounded off by the disc (as by the opening with ``borderValue=0``;
    a border that counted as hand would keep them), its middle kept."""
    mask = np.zeros((200, 200), np.uint8)
    mask[60:200, 40:160] = 1  # a block that leaves the frame at the bottom
    got, want = finger_pixels(_hand(mask, 60.0)), _by_morphology(mask, 60.0)
    for corner in ((-1, 40), (-1, 159), (60, 40), (60, 159)):
        assert got[corner] and want[corner]
    assert not got[-1, 100] and not want[-1, 100] and not got[130, 100]
    assert (got != want).sum() < 0.1 * want.sum()


def test_a_hand_smaller_than_the_disc_is_all_fingers_and_an_empty_mask_none() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 40:60] = 1
    assert np.array_equal(finger_pixels(_hand(mask, 100.0)), mask > 0)
    assert not finger_pixels(_hand(np.zeros((50, 50), np.uint8), 30.0)).any()
