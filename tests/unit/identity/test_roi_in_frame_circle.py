"""The whole-hand ROI circle stays inside the image (identity.roi_segment.in_frame_circle).

Where a wrist leaves the frame, OpenCV's distance transform counts the space beyond the
border as hand, so the inscribed circle could slide towards the cut wrist by as much as
the frame cut it; a whole hand's ROI then moved from capture to capture.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity.roi import extract_roi
from identity.roi_segment import _inscribed_circle, in_frame_circle, segment_hand
from tests.unit.identity.test_roi import drawn_hand, hand_mask


def test_circle_of_an_interior_shape_is_unchanged() -> None:
    mask = np.zeros((200, 300), np.uint8)
    cv2.circle(mask, (150, 100), 60, 1, cv2.FILLED)
    hand = segment_hand(np.where(mask > 0, 180, 10).astype(np.uint8))
    inside = in_frame_circle(hand)
    x, y, radius, _ = _inscribed_circle(hand.mask)
    assert inside.centre == pytest.approx((x, y), abs=1e-9)
    assert inside.radius == pytest.approx(radius, abs=1e-9)
    assert inside.mask is hand.mask and inside.contour is hand.contour


def test_circle_of_a_shape_cut_by_the_border_stays_in_the_image() -> None:
    mask = np.zeros((200, 300), np.uint8)
    cv2.circle(mask, (150, 190), 80, 1, cv2.FILLED)  # cut by the bottom edge
    hand = segment_hand(np.where(mask > 0, 180, 10).astype(np.uint8))
    inside = in_frame_circle(hand)
    x, y = inside.centre
    assert y + inside.radius <= mask.shape[0] + 0.5
    assert inside.radius < hand.radius  # the open-border circle reaches beyond the edge


@pytest.mark.parametrize("bottom", [470, 440, 410])
def test_whole_hand_roi_does_not_follow_where_the_frame_cuts_the_wrist(bottom: int) -> None:
    full = extract_roi(drawn_hand())
    cut = extract_roi(np.ascontiguousarray(drawn_hand()[:bottom]))
    assert full.centre is not None and cut.centre is not None
    assert full.side is not None and cut.side is not None
    assert np.hypot(cut.centre[0] - full.centre[0], cut.centre[1] - full.centre[1]) < 4.0
    assert cut.side == pytest.approx(full.side, rel=0.03)


def test_hand_mask_of_the_drawn_hand_leaves_through_the_bottom_edge() -> None:
    # The premise of the test above: the drawn wrist reaches the bottom border.
    assert hand_mask()[-1].any()
