"""Key-point (finger-valley) frames on drawn hands whose fingers leave the frame.

A contact scanner frames the palm only: the fingers are cut by the image border, so the
ROI is placed in the palm coordinate system of the two key valleys (Zhang et al. 2003),
not on the inscribed circle. Also the pieces: radial-profile valleys, whole fingers in
view, and the rejection of a pair that skips finger gaps.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.roi import RoiResult, extract_roi
from identity.roi_keypoints import _prominent_minima, find_valleys, fingers_in_view
from identity.roi_pairs import rank_key_pairs
from identity.roi_segment import segment_hand
from tests.unit.identity.test_roi import (
    DRAWN_KEY_POINTS,
    angle_between,
    assert_key_points_near,
    drawn_hand,
    hand_mask,
)

TOP = 150  # rows cut off the drawn hand: every finger leaves the frame


def cut_hand(matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The drawn hand (optionally moved by ``matrix``) with its fingers cut by the frame."""
    mask = hand_mask()
    points = DRAWN_KEY_POINTS.copy()
    if matrix is not None:
        mask = cv2.warpAffine(mask, matrix, (640, 480), flags=cv2.INTER_NEAREST)
        points = points @ matrix[:, :2].T + matrix[:, 2]
    return np.ascontiguousarray(drawn_hand(mask=mask)[TOP:]), points - [0.0, TOP]


def assert_in_key_frame(result: RoiResult) -> None:
    """The ROI square sits where the key frame puts it: size, offset and orientation."""
    assert result.key_points is not None and result.side is not None
    assert result.centre is not None
    assert result.radius is not None
    first, second = (np.array(p) for p in result.key_points)
    distance = float(np.hypot(*(second - first)))
    # The unit: geometric mean of the key distance and ROI_KEY_RADIUS_RATIO x radius.
    weight = P.ROI_KEY_RADIUS_WEIGHT
    unit = distance ** (1.0 - weight) * (P.ROI_KEY_RADIUS_RATIO * result.radius) ** weight
    assert result.side == pytest.approx(P.ROI_KEY_SIDE * unit, rel=1e-6)
    x_axis = (second - first) / distance
    y_axis = np.array([-x_axis[1], x_axis[0]])
    offset = np.array(result.centre) - (first + second) / 2.0
    depth = (P.ROI_KEY_OFFSET + P.ROI_KEY_SIDE / 2.0) * unit
    assert float(offset @ y_axis) == pytest.approx(depth, rel=1e-6)
    assert abs(float(offset @ x_axis)) < 1e-6 * unit


def test_fingers_cut_by_the_frame_place_the_roi_on_the_key_points() -> None:
    result = extract_roi(cut_hand()[0])
    assert_key_points_near(result, cut_hand()[1], tolerance=12.0)
    assert_in_key_frame(result)
    assert angle_between(result.angle_deg, 0.0) < 8.0  # key line level: no turn


@pytest.mark.parametrize("degrees", [-20.0, 15.0])
def test_rotated_contact_hand_turns_with_its_key_line(degrees: float) -> None:
    matrix = cv2.getRotationMatrix2D((320.0, 300.0), degrees, 1.0)
    image, points = cut_hand(matrix)
    result = extract_roi(image)
    assert_key_points_near(result, points, tolerance=12.0)
    assert_in_key_frame(result)
    assert angle_between(result.angle_deg, -degrees) < 8.0


def test_left_contact_hand_gives_the_mirrored_roi() -> None:
    image, points = cut_hand()
    right = extract_roi(image)
    left = extract_roi(np.ascontiguousarray(np.fliplr(image)))
    assert_key_points_near(left, points * [-1, 1] + [639, 0], tolerance=12.0)
    assert_in_key_frame(left)
    # The square is the mirror image of the right hand's: same side, negated turn,
    # centre mirrored (within the 1 px by which OpenCV's contours of a mirrored mask
    # differ).
    assert left.side == pytest.approx(right.side, rel=0.02)
    assert angle_between(left.angle_deg, -right.angle_deg) < 2.0
    assert left.centre is not None and right.centre is not None
    assert abs(left.centre[0] - (639.0 - right.centre[0])) < 1.5
    assert abs(left.centre[1] - right.centre[1]) < 1.5
    # The pixel-scale noise texture decorrelates with that 1 px (0.80 at the key
    # distance alone as unit, 0.79 with the radius in the unit).
    correlation = np.corrcoef(left.roi.ravel(), np.fliplr(right.roi).ravel())[0, 1]
    assert correlation > 0.75


def test_whole_hand_keeps_the_inscribed_circle_frame() -> None:
    hand = segment_hand(drawn_hand())
    assert fingers_in_view(hand) == (5, 0)
    assert fingers_in_view(hand.outline or hand)[1] == 0
    result = extract_roi(drawn_hand())
    assert result.radius is not None and result.side is not None
    assert result.side == pytest.approx(P.ROI_CIRCLE_SIDE * result.radius, rel=0.02)


def test_cut_fingers_are_not_in_view() -> None:
    whole, cut = fingers_in_view(segment_hand(cut_hand()[0]))
    assert whole < P.ROI_WHOLE_HAND_FINGERS and cut >= 3


def test_prominent_minima_of_a_closed_profile() -> None:
    angle = np.linspace(0.0, 2.0 * np.pi, 400, endpoint=False)
    profile = 10.0 - 3.0 * np.exp(-(((angle - 1.0) / 0.1) ** 2))  # one deep dip
    profile -= 0.5 * np.exp(-(((angle - 4.0) / 0.1) ** 2))  # one shallow dip
    found = _prominent_minima(profile, 1.0)
    assert len(found) == 1
    index, prominence = found[0]
    assert abs(angle[index] - 1.0) < 0.02 and prominence == pytest.approx(3.0, abs=0.01)
    assert len(_prominent_minima(profile, 0.3)) == 2
    assert _prominent_minima(np.full(50, 4.0), 0.1) == []


def test_thumb_gap_pairs_are_not_ranked() -> None:
    # The whole drawn hand has the thumb web and the three finger gaps; no plausible
    # pair may skip a finger gap (thumb web with the ring-little gap, ...).
    hand = segment_hand(drawn_hand())
    outline = hand.outline or hand
    valleys = find_valleys(outline)
    assert len(valleys) >= 4
    ranked = rank_key_pairs(valleys, outline, None)
    assert ranked
    _, a, b = ranked[0]
    found = np.array([a.bottom, b.bottom])
    error = min(
        np.abs(found - DRAWN_KEY_POINTS).max(), np.abs(found[::-1] - DRAWN_KEY_POINTS).max()
    )
    assert error < 15.0
