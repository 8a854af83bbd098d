"""Finger-valley key points and the palm coordinate system (Zhang et al. 2003).

Candidate valleys are the gap bottoms inside the deep convexity defects of the hand
contour (one defect can hold several gaps when the fingers leave the image; it is
split recursively), kept when they open away from the palm centre. The key points
are the pair of valleys whose geometry fits the gaps between index and middle finger
and between ring and little finger: both open towards the fingers and lie on the
finger side of the palm centre, their distance ``d`` is about ``ROI_KEY_DISTANCE`` x
the palm radius, the palm centre lies ``ROI_KEY_CENTRE_DEPTH`` x ``d`` below the line
joining them and near its perpendicular bisector, and a third valley (middle-ring gap)
near their midpoint lowers the cost (see ``_pair_cost``).
Each key point is then refined to the tangent point of the line that touches both
gaps from the palm side, as in Zhang, Kong, You and Wong, "Online palmprint
identification", IEEE TPAMI 25(9), 2003 (also used for contactless hands by Michael,
Connie and Teoh, "Touch-less palm print biometrics", Pattern Recognition 2008).
The two tangent points define the palm coordinate system: origin at their midpoint,
x axis along the line, y axis towards the palm.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.roi_segment import Contour, Hand

Point = NDArray[np.float64]
"""``(2,)`` ``float64`` (x, y) pixel position."""


@dataclass(frozen=True)
class Valley:
    """One candidate finger valley: a deep convexity defect of the hand contour.

    Attributes:
        bottom: deepest point (x, y) px.
        index: position of ``bottom`` in the contour.
        depth: distance from the hull edge in px.
        outward: unit vector from ``bottom`` to the midpoint of the defect's two hull
            points (along the fingers that bound the gap, away from the palm).
    """

    bottom: Point
    index: int
    depth: float
    outward: Point


@dataclass(frozen=True)
class PalmFrame:
    """Palm coordinate system built from the two key points (working px).

    Attributes:
        first, second: key points (x, y), tangent points of the two finger gaps.
        origin: their midpoint.
        x_axis: unit vector from ``first`` to ``second``.
        y_axis: unit vector perpendicular to ``x_axis``, towards the palm centre.
        spacing: key-point distance ``d`` (px), the unit of the ROI's size and offset.
    """

    first: Point
    second: Point
    origin: Point
    x_axis: Point
    y_axis: Point
    spacing: float


def _defects(contour: Contour) -> NDArray[np.int32] | None:
    hull = np.sort(cv2.convexHull(contour, returnPoints=False).ravel())
    if len(hull) < 3:
        return None
    try:
        defects = cv2.convexityDefects(contour, hull.reshape(-1, 1).astype(np.int32))
    except cv2.error:  # self-intersecting contours of degenerate masks
        return None
    return None if defects is None else np.asarray(defects, np.int32).reshape(-1, 4)


def _outer_hull(points: NDArray[np.float64], lo: int, hi: int) -> list[int]:
    """Indices (ascending, in ``lo..hi``) of the outer convex hull of a contour stretch.

    A point far on the inner side of the chord ``lo``-``hi`` (beyond the stretch's
    deepest point) is added before taking the hull, so the hull's vertices between
    ``lo`` and ``hi`` are the stretch's outer envelope (finger tips, border corners)
    and never its gap bottoms.
    """
    p, q = points[lo], points[hi]
    edge = q - p
    length = max(float(np.hypot(*edge)), 1.0)
    inner = np.array([edge[1], -edge[0]]) / length
    deepest = points[lo + int(np.argmax((points[lo : hi + 1] - p) @ inner))]
    towards = deepest - (p + q) / 2.0
    if float(towards @ inner) > 1.0:  # aim at the deepest point: it stays off the hull
        inner = towards / float(np.hypot(*towards))
    span = float(np.ptp(points[lo : hi + 1], axis=0).max()) + length
    far = (p + q) / 2.0 + inner * 10.0 * span
    stretch = np.vstack([points[lo : hi + 1], far]).astype(np.float32)
    hull = cv2.convexHull(stretch, returnPoints=False).ravel()
    return sorted(lo + int(i) for i in hull if i < hi - lo + 1)


def _split_gap(
    points: NDArray[np.float64], lo: int, hi: int, min_depth: float, found: list[tuple[int, float]]
) -> None:
    """Recursively find gap bottoms between contour indices ``lo`` < ``hi`` (unwrapped).

    Between consecutive vertices of the stretch's outer hull (:func:`_outer_hull`), the
    point farthest inside their chord is a gap bottom when at least ``min_depth`` px
    deep; the stretches on either side of it are searched again. This splits one
    convexity defect that spans several gaps (fingers cut by the image border, pegs)
    into its gaps (a recursive convexity decomposition).
    """
    if hi - lo < 3:
        return
    hull = _outer_hull(points, lo, hi)
    for i, j in itertools.pairwise(hull):
        if j - i < 3:
            continue
        edge = points[j] - points[i]
        length = max(float(np.hypot(*edge)), 1.0)
        inside = (points[i + 1 : j] - points[i]) @ np.array([edge[1], -edge[0]]) / length
        k = int(np.argmax(inside))
        if float(inside[k]) < min_depth:
            continue
        found.append((i + 1 + k, float(inside[k])))
        _split_gap(points, i, i + 1 + k, min_depth, found)
        _split_gap(points, i + 1 + k, j, min_depth, found)


def _opening(points: NDArray[np.float64], index: int, arm: int) -> Point:
    """Unit opening direction of the gap whose bottom is contour point ``index``.

    The arms are the contour points ``arm`` steps before and after the bottom; the
    opening is the direction from the bottom to their midpoint.
    """
    count = len(points)
    before, after = points[(index - arm) % count], points[(index + arm) % count]
    mouth = (before + after) / 2.0 - points[index]
    direction: Point = mouth / max(float(np.hypot(*mouth)), 1e-9)
    return direction


def find_valleys(hand: Hand) -> list[Valley]:
    """Candidate finger valleys of ``hand``, in contour order.

    Each convexity defect deeper than ``ROI_VALLEY_MIN_DEPTH`` x radius is split into
    its gaps (:func:`_split_gap`); a gap bottom is kept when within
    ``ROI_VALLEY_MAX_DISTANCE`` x radius of the palm centre, not on the image border,
    and opening away from the centre. Its opening direction points from the bottom to
    the midpoint of its arm ends (``ROI_VALLEY_ARM`` x radius of contour on each side).
    """
    defects = _defects(hand.contour)
    if defects is None:
        return []
    points = hand.contour[:, 0, :].astype(np.float64)
    count = len(points)
    doubled = np.vstack([points, points])
    min_depth = P.ROI_VALLEY_MIN_DEPTH * hand.radius
    found: list[tuple[int, float]] = []
    for start, end, _, raw_depth in defects:
        if raw_depth / 256.0 >= min_depth:
            _split_gap(
                doubled, int(start), int(end) + (count if end < start else 0), min_depth, found
            )
    centre = np.array(hand.centre)
    height, width = hand.mask.shape
    arm = max(2, round(P.ROI_VALLEY_ARM * hand.radius))
    valleys: dict[int, Valley] = {}
    for raw_index, depth in found:
        index = raw_index % count
        bottom = points[index]
        reach = float(np.hypot(*(bottom - centre)))
        outward = _opening(points, index, arm)
        on_border = min(bottom[0], bottom[1], width - 1 - bottom[0], height - 1 - bottom[1]) < 2
        away = float(outward @ (bottom - centre)) > 0.0
        if reach <= P.ROI_VALLEY_MAX_DISTANCE * hand.radius and not on_border and away:
            valleys[index] = Valley(bottom=bottom, index=index, depth=depth, outward=outward)
    return [valleys[index] for index in sorted(valleys)]


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


def _opens_to_fingers(valley: Valley, fingerward: Point) -> float:
    """Cosine between the valley's opening and the finger direction."""
    return float(valley.outward @ fingerward)


def _middle_cost(a: Valley, geometry: _PairGeometry, others: list[Valley]) -> float:
    """Cost of the best middle-ring valley between the pair; ROI_KEY_NO_MIDDLE_COST if none.

    The three gaps between index, middle, ring and little finger lie roughly on one line
    and are roughly evenly spaced: the middle one is scored by its distance from the
    midpoint along the key line and across it (in d; the middle finger is the longest,
    so its gap usually lies on the finger side of the key line), and must open to the
    fingers.
    """
    best = P.ROI_KEY_NO_MIDDLE_COST
    min_cos = math.cos(math.radians(P.ROI_KEY_MAX_OPENING_DEG))
    low, high = P.ROI_KEY_MIDDLE_ACROSS
    typical = (low + high) / 2.0
    for other in others:
        along = float((other.bottom - a.bottom) @ geometry.x_axis) / geometry.spacing - 0.5
        across = float((other.bottom - a.bottom) @ geometry.fingerward) / geometry.spacing
        if (
            abs(along) <= P.ROI_KEY_MIDDLE_ALONG
            and low <= across <= high
            and _opens_to_fingers(other, geometry.fingerward) >= min_cos
        ):
            cost = abs(along) / P.ROI_KEY_MIDDLE_ALONG + abs(across - typical) / (high - typical)
            best = min(best, cost)
    return best


def _pair_cost(a: Valley, b: Valley, valleys: list[Valley], hand: Hand) -> float | None:
    """Misfit of (a, b) as the (index-middle, ring-little) valleys; None if implausible.

    Hard limits (None): both gaps must open towards the fingers (within
    ``ROI_KEY_MAX_OPENING_DEG`` of the key line's normal pointing away from the palm
    centre) and lie on the finger side of the palm centre (wrist notches and the thumb
    gap fail this), and the key distance, the centre's depth below the key line and its
    lateral offset must lie in their ranges. The cost adds the normalised deviations of
    these from their typical values, the openings' misalignment, and the middle-ring
    valley's cost (:func:`_middle_cost`), minus the shallower gap's depth relative to the
    deepest valley.
    """
    geometry = _pair_geometry(a, b, hand)
    opening = min(
        _opens_to_fingers(a, geometry.fingerward), _opens_to_fingers(b, geometry.fingerward)
    )
    if opening < math.cos(math.radians(P.ROI_KEY_MAX_OPENING_DEG)):
        return None
    centre = np.array(hand.centre)
    height = min(float((v.bottom - centre) @ geometry.fingerward) for v in (a, b))
    if height < P.ROI_KEY_MIN_HEIGHT * geometry.spacing:
        return None
    misfits = (
        (math.log(geometry.size / P.ROI_KEY_DISTANCE), P.ROI_KEY_DISTANCE_LOG_TOLERANCE),
        (geometry.depth - P.ROI_KEY_CENTRE_DEPTH, P.ROI_KEY_CENTRE_DEPTH_TOLERANCE),
        (geometry.lateral, P.ROI_KEY_MAX_LATERAL),
    )
    if any(abs(value) > tolerance for value, tolerance in misfits):
        return None
    cost = sum(abs(value) / tolerance for value, tolerance in misfits) + (1.0 - opening)
    others = [v for v in valleys if v is not a and v is not b]
    cost += _middle_cost(a, geometry, others)
    deepest = max(valley.depth for valley in valleys)
    return cost - P.ROI_KEY_DEPTH_WEIGHT * min(a.depth, b.depth) / deepest


def rank_key_pairs(valleys: list[Valley], hand: Hand) -> list[tuple[Valley, Valley]]:
    """Valley pairs that fit the index-middle and ring-little gaps, best fit first."""
    ranked = []
    for a, b in itertools.combinations(valleys, 2):
        cost = _pair_cost(a, b, valleys, hand)
        if cost is not None:
            ranked.append((cost, a, b))
    ranked.sort(key=lambda item: item[0])
    return [(a, b) for _, a, b in ranked[: P.ROI_KEY_MAX_PAIRS_TRIED]]


def _gap_points(contour: Contour, valley: Valley, reach: float) -> NDArray[np.float64]:
    """Contour points within ``reach`` px of the valley bottom, along the contour."""
    points = contour[:, 0, :].astype(np.float64)
    count = len(points)
    span = min(count // 2, int(math.ceil(2.0 * reach)))
    indices = (valley.index + np.arange(-span, span + 1)) % count
    near = points[indices]
    close: NDArray[np.float64] = near[np.hypot(*(near - valley.bottom).T) <= reach]
    return close


def _tangent(
    gap_a: NDArray[np.float64], gap_b: NDArray[np.float64], centre: Point
) -> tuple[Point, Point] | None:
    """Tangent points of the line touching both gaps with the palm centre on its far side."""
    both = np.vstack([gap_a, gap_b]).astype(np.float32)
    hull = cv2.convexHull(both, returnPoints=False).ravel()
    in_a = hull < len(gap_a)
    for i in range(len(hull)):
        j = (i + 1) % len(hull)
        if in_a[i] == in_a[j]:
            continue
        p, q = both[hull[i]].astype(np.float64), both[hull[j]].astype(np.float64)
        edge = q - p
        normal = np.array([-edge[1], edge[0]])
        sides = (both - p) @ normal
        if float((centre - p) @ normal) * float(sides.sum()) < 0:  # centre beyond the edge
            return (p, q) if in_a[i] else (q, p)
    return None


def palm_frame(hand: Hand, pair: tuple[Valley, Valley]) -> PalmFrame:
    """Palm coordinate system from the key valleys, refined to the common tangent points."""
    a, b = pair
    centre = np.array(hand.centre)
    reach = P.ROI_KEY_TANGENT_REACH * float(np.hypot(*(b.bottom - a.bottom)))
    touch = _tangent(
        _gap_points(hand.contour, a, reach), _gap_points(hand.contour, b, reach), centre
    )
    first, second = touch if touch is not None else (a.bottom, b.bottom)
    offset = second - first
    spacing = max(float(np.hypot(*offset)), 1e-9)
    x_axis = offset / spacing
    y_axis = np.array([-x_axis[1], x_axis[0]])
    origin = (first + second) / 2.0
    if float((centre - origin) @ y_axis) < 0:
        first, second, x_axis = second, first, -x_axis
        y_axis = np.array([-x_axis[1], x_axis[0]])
    return PalmFrame(first, second, origin, x_axis, y_axis, spacing)


def opening_direction(valleys: list[Valley]) -> Point | None:
    """Finger direction from the valley openings: depth-weighted mean of the largest group.

    Finger gaps open along the fingers; the thumb gap and notches of the wrist or the
    image border open elsewhere. The valleys are grouped by opening direction (mutually
    within ``ROI_OPENING_GROUP_DEG``), the group with the largest summed depth wins, and
    its depth-weighted mean opening is returned as a unit vector (None without valleys).
    """
    if not valleys:
        return None
    openings = np.array([valley.outward for valley in valleys])
    depths = np.array([valley.depth for valley in valleys]) ** 2
    near = (openings @ openings.T) >= math.cos(math.radians(P.ROI_OPENING_GROUP_DEG))
    group = near[int(np.argmax(near.astype(np.float64) @ depths))]
    mean = (openings[group] * depths[group, None]).sum(axis=0)
    norm = float(np.hypot(*mean))
    if norm < 1e-9:
        return None
    direction: Point = mean / norm
    return direction


def circle_frame(hand: Hand, fingers: Point, keys: tuple[Point, Point] | None) -> PalmFrame:
    """Palm frame centred on the inscribed circle, y axis against ``fingers`` (unit vector).

    The ROI square (side ``ROI_KEY_SIDE`` x spacing, top ``ROI_KEY_OFFSET`` x spacing
    below the origin) gets side ``ROI_CIRCLE_SIDE`` x radius and its centre
    ``ROI_CIRCLE_SHIFT`` x radius from the palm centre towards the fingers. ``keys``
    (the key points, when a pair was found) are kept as the frame's first and second
    points, ordered along the x axis.
    """
    y_axis = -fingers / max(float(np.hypot(*fingers)), 1e-9)
    x_axis = np.array([y_axis[1], -y_axis[0]])
    spacing = P.ROI_CIRCLE_SIDE * hand.radius / P.ROI_KEY_SIDE
    centre = np.array(hand.centre) - y_axis * P.ROI_CIRCLE_SHIFT * hand.radius
    origin = centre - y_axis * (P.ROI_KEY_OFFSET + P.ROI_KEY_SIDE / 2.0) * spacing
    if keys is None:
        half = x_axis * spacing / 2.0
        return PalmFrame(origin - half, origin + half, origin, x_axis, y_axis, spacing)
    first, second = keys if float((keys[1] - keys[0]) @ x_axis) >= 0 else keys[::-1]
    return PalmFrame(first, second, origin, x_axis, y_axis, spacing)


def finger_direction(hand: Hand) -> Point | None:
    """Direction from the palm centre to the fingers (unit vector), None without fingers.

    Fingers are the hand parts that a morphological opening with a disc of
    ``ROI_FINGER_OPENING`` x radius removes (thin protrusions; outside the image counts
    as background, so fingers cut by the border are removed too), farther than
    ``ROI_FINGER_MIN_DISTANCE`` x radius from the palm centre; at least
    ``ROI_MIN_FINGER_AREA`` x radius^2 px of them are needed. The direction is the mean
    of the unit vectors from the centre to their pixels.
    """
    size = max(3, round(P.ROI_FINGER_OPENING * hand.radius) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(hand.mask, cv2.MORPH_OPEN, disc, borderValue=0)
    ys, xs = np.nonzero((hand.mask > 0) & (opened == 0))
    offsets = np.stack([xs - hand.centre[0], ys - hand.centre[1]], axis=1).astype(np.float64)
    norms = np.hypot(*offsets.T)
    far = norms > P.ROI_FINGER_MIN_DISTANCE * hand.radius
    if float(far.sum()) < P.ROI_MIN_FINGER_AREA * hand.radius**2:
        return None
    mean = (offsets[far] / norms[far, None]).sum(axis=0)
    norm = float(np.hypot(*mean))
    direction: Point | None = mean / norm if norm > 1e-9 else None
    return direction
