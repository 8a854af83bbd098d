"""Which ROI regime a drawn hand takes, and that one palm keeps one regime.

A whole hand (all fingers in the frame) takes the inscribed-circle square; a hand whose
fingers are cut by the frame takes the key-point (finger-valley) square. A palm whose
captures take different regimes gets templates that do not match, so the decision must
not flip on things that are no cut finger: a sleeve or wrist band leaving the frame on
the wrist side, or a thumb lying against the index finger. A hand whose fingers are
cut and whose valleys cannot be found, or whose key-point square fails the quality
gate, fails to acquire rather than falling back on a differently placed square.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.errors import AcquisitionError
from identity.roi import RoiResult, extract_roi
from identity.roi_keypoints import finger_direction, fingers_in_view, key_unit
from identity.roi_segment import segment_hand
from tests.unit.identity.test_roi import PALM_CENTRE, angle_between, drawn_hand, hand_mask
from tests.unit.identity.test_roi_keyframe import TOP, cut_hand

SLEEVE_LEVEL = 70  # grey level of the sleeve: below Otsu's level, above the outline's


def with_sleeve(image: np.ndarray) -> np.ndarray:
    """The drawn hand with a dim sleeve from below the wrist to the lower image border."""
    noise = np.random.default_rng(1).normal(0.0, 5.0, image.shape)
    sleeve = np.clip(SLEEVE_LEVEL + noise, 0, 255).astype(np.uint8)
    out = image.copy()
    out[430:, 230:411] = sleeve[430:, 230:411]
    return out


def thumb_against_index_mask() -> np.ndarray:
    """The drawn hand with its thumb turned up against the index finger (one part)."""
    mask = hand_mask()
    cv2.line(mask, (235, 330), (140, 250), 0, 46)  # remove the spread thumb
    cv2.ellipse(mask, PALM_CENTRE, (100, 110), 0, 0, 360, 1, cv2.FILLED)
    cv2.rectangle(mask, (250, 380), (390, 479), 1, cv2.FILLED)
    cv2.line(mask, (228, 300), (210, 175), 1, 40)
    return mask


def assert_circle_square(result: RoiResult) -> None:
    """The whole-hand regime: the square's side is ROI_CIRCLE_SIDE x the palm radius."""
    assert result.side is not None and result.radius is not None
    assert result.side == pytest.approx(P.ROI_CIRCLE_SIDE * result.radius, rel=1e-6)


def test_sleeve_leaving_the_frame_is_no_cut_finger() -> None:
    plain = extract_roi(drawn_hand())
    image = with_sleeve(drawn_hand())
    hand = segment_hand(image)
    outline = hand.outline or hand
    # At the outline's lower level the sleeve is part of the hand and leaves the frame:
    # counted without the finger direction, it looks like cut fingers.
    assert fingers_in_view(outline)[1] >= 1
    fingers = finger_direction(hand)
    assert fingers is not None
    assert fingers_in_view(outline, fingers=fingers) == (5, 0)
    assert fingers_in_view(hand, fingers=fingers) == (5, 0)
    result = extract_roi(image)
    assert_circle_square(result)
    assert angle_between(result.angle_deg, plain.angle_deg) < 1.0
    assert plain.centre is not None and result.centre is not None
    assert math.dist(result.centre, plain.centre) < 2.0


def test_bright_wrist_strip_does_not_turn_the_finger_direction() -> None:
    # A narrow strip at the wrist (e.g. a band), thin enough for the finger opening to
    # take it for a finger, leaving the frame opposite the fingers.
    mask = hand_mask()
    mask[380:] = 0
    cv2.rectangle(mask, (250, 380), (390, 420), 1, cv2.FILLED)
    cv2.rectangle(mask, (360, 420), (405, 479), 1, cv2.FILLED)  # off the palm's axis
    plain_hand = segment_hand(drawn_hand())
    strip_hand = segment_hand(drawn_hand(mask=mask))
    assert fingers_in_view(strip_hand) == (5, 1)  # the strip is cut by the border
    plain, strip = finger_direction(plain_hand), finger_direction(strip_hand)
    assert plain is not None and strip is not None
    assert fingers_in_view(strip_hand, fingers=strip) == (5, 0)
    # Counted with the fingers, the strip turned the direction by 1.7 degrees.
    assert math.degrees(math.acos(min(1.0, float(plain @ strip)))) < 0.5
    assert_circle_square(extract_roi(drawn_hand(mask=mask)))


def test_thumb_against_its_neighbour_keeps_the_whole_hand_frame() -> None:
    mask = thumb_against_index_mask()
    hand = segment_hand(drawn_hand(mask=mask))
    assert fingers_in_view(hand) == (4, 0)  # thumb and index finger are one part
    result = extract_roi(drawn_hand(mask=mask))
    assert_circle_square(result)
    assert angle_between(result.angle_deg, 0.0) < 12.0


@pytest.mark.parametrize("turns", [1, 2, 3])
@pytest.mark.parametrize("mirrored", [False, True])
def test_turned_and_mirrored_sleeved_hand_keeps_its_regime(turns: int, mirrored: bool) -> None:
    upright = with_sleeve(drawn_hand())
    reference = extract_roi(upright)
    image = np.fliplr(upright) if mirrored else upright
    image = np.ascontiguousarray(np.rot90(image, turns))  # sleeve still at an image border
    result = extract_roi(image)
    assert_circle_square(result)
    assert result.side == pytest.approx(reference.side, rel=0.02)
    # np.rot90 turns counter-clockwise; turning the fingers back up is clockwise.
    expected = (-reference.angle_deg if mirrored else reference.angle_deg) - 90.0 * turns
    assert angle_between(result.angle_deg, expected) < 2.0


def test_cut_hand_without_finger_gaps_fails_instead_of_taking_the_circle() -> None:
    mask = hand_mask()
    cv2.rectangle(mask, (232, 40), (418, 230), 1, cv2.FILLED)  # fingers pressed together
    image = np.ascontiguousarray(drawn_hand(mask=mask)[TOP:])
    with pytest.raises(AcquisitionError, match="fingers closed"):
        extract_roi(image)


def test_saturated_key_square_fails_instead_of_taking_another_square() -> None:
    image, _ = cut_hand()
    result = extract_roi(image)
    assert result.key_points is not None and result.centre is not None
    assert result.side is not None
    # Burn out the finger-side 70 % of the key-point square (a glare): the inscribed-
    # circle square, lower on the palm, would still pass the gate, but it lies elsewhere
    # and at another scale, so the capture fails to acquire instead.
    side, turn = result.side, math.radians(result.angle_deg)
    x_axis = np.array([math.cos(turn), math.sin(turn)])
    y_axis = np.array([-x_axis[1], x_axis[0]])
    top_left = np.array(result.centre) - (x_axis + y_axis) * side / 2.0
    corners = [
        top_left - (x_axis + y_axis) * 0.1 * side,
        top_left + x_axis * 1.1 * side - y_axis * 0.1 * side,
        top_left + x_axis * 1.1 * side + y_axis * 0.7 * side,
        top_left - x_axis * 0.1 * side + y_axis * 0.7 * side,
    ]
    burnt = image.copy()
    cv2.fillPoly(burnt, [np.array(corners).astype(np.int32)], 255)
    assert float(np.mean(burnt >= P.ROI_SATURATION_LEVEL)) < P.ROI_MAX_SATURATED_FRACTION
    with pytest.raises(AcquisitionError, match="saturated"):
        extract_roi(burnt)


def test_key_unit_blends_key_distance_and_palm_radius() -> None:
    radius = 100.0
    typical = P.ROI_KEY_RADIUS_RATIO * radius
    assert key_unit(typical, radius) == pytest.approx(typical)
    # A key distance 20 % too long moves the unit by only (1.2 ** (1 - weight)).
    ratio = key_unit(1.2 * typical, radius) / typical
    assert ratio == pytest.approx(1.2 ** (1.0 - P.ROI_KEY_RADIUS_WEIGHT))
    assert 1.0 < ratio < 1.2
    assert key_unit(typical, 2.0 * radius) > typical
