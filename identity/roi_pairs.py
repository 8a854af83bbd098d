"""Which two finger valleys are the key points: index-middle and ring-little gaps.

Every pair of candidate valleys (:func:`identity.roi_keypoints.find_valleys`) is seen
as the (index-middle, ring-little) pair and scored by how well it fits a hand:

* both gaps open towards the fingers: within ``ROI_KEY_MAX_OPENING_DEG`` of the key
  line's normal pointing away from the palm centre (the "fingerward" normal);
* both are narrow: the angle between a gap's two sides (its spread) at most
  ``ROI_KEY_MAX_SPREAD_DEG`` (a peg's rim, the wrist or the frame's edge make wide
  notches);
* the key line lies across the fingers: the fingerward normal within
  ``ROI_KEY_MAX_SKEW_DEG`` of the gaps' mean opening. The thumb gap lies far down the
  hand towards the wrist, so a line from it to a finger gap runs obliquely;
* the fingerward normal agrees with the finger direction found from the finger
  pixels (within ``ROI_KEY_MAX_TURN_DEG``);
* the key distance ``d``, the palm centre's depth below the key line and its lateral
  offset from the line's bisector lie near their typical values (in palm radii / d);
* a third valley (the middle-ring gap, or the peg between middle and ring finger of a
  contact scanner) near the midpoint lowers the cost, and deep gaps lower it too;
* no finger gap lies between the two far out on the finger side (as the index-middle
  and middle-ring gaps do between the thumb gap and the ring-little gap).

A pair that breaks any hard limit is not plausible; the plausible ones are returned
best first, with their costs. Without a plausible pair the key points are not found
with confidence and the ROI falls back on the inscribed circle (:mod:`identity.roi`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from identity import params as P
from identity.roi_keypoints import Point, Valley
from identity.roi_segment import Hand


@dataclass(frozen=True)
class _PairGeometry:
    """A valley pair seen as the (index-middle, ring-little) key valleys (lengths in d)."""

    spacing: float  # key distance d (px)
    x_axis: Point  # unit vector from the first valley to the second
    fingerward: Point  # unit normal of the key line pointing away from the palm centre
    size: float  # d / palm radius
    depth: float  # palm centre distance below the key line / d
    lateral: float  # palm centre offset along the key line from its midpoint / d


def _pair_geometry(a: Valley, b: Valley, hand: Hand) -> _PairGeometry:
    offset = b.bottom - a.bottom
    spacing = max(float(np.hypot(*offset)), 1e-9)
    x_axis = offset / spacing
    normal = np.array([-x_axis[1], x_axis[0]])
    to_centre = np.array(hand.centre) - (a.bottom + b.bottom) / 2.0
    if float(to_centre @ normal) > 0:
        normal = -normal
    return _PairGeometry(
        spacing=spacing,
        x_axis=x_axis,
        fingerward=normal,
        size=spacing / hand.radius,
        depth=-float(to_centre @ normal) / spacing,
        lateral=float(to_centre @ x_axis) / spacing,
    )


def _angle_deg(u: Point, v: Point) -> float:
    """Angle between two vectors (degrees, 0..180)."""
    cos = float(u @ v) / max(float(np.hypot(*u)) * float(np.hypot(*v)), 1e-12)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _middle_cost(a: Valley, geometry: _PairGeometry, others: list[Valley]) -> float:
    """Cost of the best middle-ring valley between the pair; ROI_KEY_NO_MIDDLE_COST if none.

    The three gaps between index, middle, ring and little finger lie roughly on one line
    and are roughly evenly spaced: the middle one is scored by its distance from the
    midpoint along the key line and across it (in d; the middle finger is the longest,
    so its gap usually lies on the finger side of the key line), and must open to the
    fingers.
    """
    best = P.ROI_KEY_NO_MIDDLE_COST
    low, high = P.ROI_KEY_MIDDLE_ACROSS
    typical = (low + high) / 2.0
    for other in others:
        along = float((other.bottom - a.bottom) @ geometry.x_axis) / geometry.spacing - 0.5
        across = float((other.bottom - a.bottom) @ geometry.fingerward) / geometry.spacing
        if (
            abs(along) <= P.ROI_KEY_MIDDLE_ALONG
            and low <= across <= high
            and _angle_deg(other.outward, geometry.fingerward) <= P.ROI_KEY_MAX_OPENING_DEG
        ):
            cost = abs(along) / P.ROI_KEY_MIDDLE_ALONG + abs(across - typical) / (high - typical)
            best = min(best, cost)
    return best


def _skips_a_gap(a: Valley, geometry: _PairGeometry, others: list[Valley]) -> bool:
    """Whether the pair leaves out a finger gap that lies between them.

    Between the thumb gap and the ring-little gap lie two finger gaps (index-middle and
    middle-ring), out on the finger side of the line joining them; between the
    index-middle and ring-little gaps lies at most one (middle-ring, or the peg of a
    contact scanner), near that line. A pair with two gaps between it (across the key
    line above ``ROI_KEY_MIDDLE_ACROSS[0]`` x d, opening towards the fingers), or one
    beyond ``ROI_KEY_MIDDLE_ACROSS[1]`` x d, skips a gap.
    """
    low, high = P.ROI_KEY_MIDDLE_ACROSS
    between = 0
    for other in others:
        along = float((other.bottom - a.bottom) @ geometry.x_axis) / geometry.spacing
        across = float((other.bottom - a.bottom) @ geometry.fingerward) / geometry.spacing
        opens = _angle_deg(other.outward, geometry.fingerward) <= P.ROI_KEY_MAX_OPENING_DEG
        if 0.0 < along < 1.0 and across > low and opens:
            between += 1
            if across > high or between > 1:
                return True
    return False


def _misfits(
    a: Valley, b: Valley, geometry: _PairGeometry, fingers: Point | None
) -> list[tuple[float, float]] | None:
    """(value, tolerance) of each scored deviation; None when a gap opens the wrong way."""
    openings = [_angle_deg(v.outward, geometry.fingerward) for v in (a, b)]
    if max(openings) > P.ROI_KEY_MAX_OPENING_DEG:
        return None
    misfits = [
        (max(openings), P.ROI_KEY_MAX_OPENING_DEG),
        (max(a.spread, b.spread), P.ROI_KEY_MAX_SPREAD_DEG),
        (_angle_deg(a.outward + b.outward, geometry.fingerward), P.ROI_KEY_MAX_SKEW_DEG),
        (math.log(geometry.size / P.ROI_KEY_DISTANCE), P.ROI_KEY_DISTANCE_LOG_TOLERANCE),
        (geometry.depth - P.ROI_KEY_CENTRE_DEPTH, P.ROI_KEY_CENTRE_DEPTH_TOLERANCE),
        (geometry.lateral, P.ROI_KEY_MAX_LATERAL),
    ]
    if fingers is not None:
        misfits.append((_angle_deg(fingers, geometry.fingerward), P.ROI_KEY_MAX_TURN_DEG))
    return misfits


def pair_cost(
    a: Valley, b: Valley, valleys: list[Valley], hand: Hand, fingers: Point | None
) -> float | None:
    """Misfit of (a, b) as the (index-middle, ring-little) valleys; None if implausible.

    Args:
        a, b: two candidate valleys of ``hand``.
        valleys: all candidate valleys (the middle-ring gap is looked for among them).
        hand: the hand outline the valleys were found on (palm centre and radius).
        fingers: finger direction (unit vector) from the finger pixels, or None.

    Returns:
        The sum of each deviation over its tolerance plus the middle-valley cost, minus
        ``ROI_KEY_DEPTH_WEIGHT`` x the shallower gap's depth relative to the deepest
        valley; None when any deviation exceeds its tolerance or both gaps do not lie
        at least ``ROI_KEY_MIN_HEIGHT`` x d on the finger side of the palm centre.
    """
    geometry = _pair_geometry(a, b, hand)
    misfits = _misfits(a, b, geometry, fingers)
    if misfits is None or any(abs(value) > tolerance for value, tolerance in misfits):
        return None
    centre = np.array(hand.centre)
    height = min(float((v.bottom - centre) @ geometry.fingerward) for v in (a, b))
    if height < P.ROI_KEY_MIN_HEIGHT * geometry.spacing:
        return None
    others = [v for v in valleys if v is not a and v is not b]
    if _skips_a_gap(a, geometry, others):
        return None
    cost = sum(abs(value) / tolerance for value, tolerance in misfits)
    middle = _middle_cost(a, geometry, others)
    if middle >= P.ROI_KEY_NO_MIDDLE_COST:
        return None
    cost += middle
    deepest = max(valley.depth for valley in valleys)
    return cost - P.ROI_KEY_DEPTH_WEIGHT * min(a.depth, b.depth) / deepest


def rank_key_pairs(
    valleys: list[Valley], hand: Hand, fingers: Point | None
) -> list[tuple[float, Valley, Valley]]:
    """(cost, a, b) of the plausible key pairs, best fit first (see :func:`pair_cost`)."""
    ranked = []
    for a, b in itertools.combinations(valleys, 2):
        cost = pair_cost(a, b, valleys, hand, fingers)
        if cost is not None:
            ranked.append((cost, a, b))
    ranked.sort(key=lambda item: item[0])
    return ranked[: P.ROI_KEY_MAX_PAIRS_TRIED]
