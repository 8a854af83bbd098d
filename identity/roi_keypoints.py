"""Finger-valley key points and the palm coordinate system (Zhang et al. 2003).

Candidate valleys are the prominent minima of the hand contour's distance from the
palm centre (fingers cut by the frame, pegs and the thumb web included), kept when
they open away from the palm centre. The key points are the pair of valleys that fits
the gaps between index and middle finger and between ring and little finger best
(:mod:`identity.roi_pairs`). Each key point is then refined to the tangent point of
the line that touches both gaps from the palm side, as in Zhang, Kong, You and Wong,
"Online palmprint identification", IEEE TPAMI 25(9), 2003 (also used for contactless
hands by Michael, Connie and Teoh, "Touch-less palm print biometrics", Pattern Recognition 2008).
The two tangent points define the palm coordinate system: origin at their midpoint,
x axis along the line, y axis towards the palm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
        outward: unit vector from ``bottom`` to the midpoint of its arm ends (along the
            fingers that bound the gap, away from the palm).
        spread: angle (degrees) between the two arms, from the bottom to the contour
            points ``ROI_VALLEY_ARM`` x radius along the contour either side: small for
            the narrow gap between two fingers, large for a wide notch (a peg's rim,
            the wrist, the frame's edge).
    """

    bottom: Point
    index: int
    depth: float
    outward: Point
    spread: float = 0.0


@dataclass(frozen=True)
class PalmFrame:
    """Palm coordinate system built from the two key points (working px).

    Attributes:
        first, second: key points (x, y), tangent points of the two finger gaps.
        origin: their midpoint.
        x_axis: unit vector from ``first`` to ``second``.
        y_axis: unit vector perpendicular to ``x_axis``, towards the palm centre.
        spacing: the unit (px) of the ROI's size and offset: for a key-point frame
            :func:`key_unit` of the key-point distance ``d`` and the palm radius.
    """

    first: Point
    second: Point
    origin: Point
    x_axis: Point
    y_axis: Point
    spacing: float


def _circular_smooth(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Moving average over ``width`` (odd) neighbours of a closed sequence."""
    if width < 3 or len(values) < width:
        return values
    half = width // 2
    padded = np.concatenate([values[-half:], values, values[:half]])
    kernel = np.full(width, 1.0 / width)
    smooth: NDArray[np.float64] = np.convolve(padded, kernel, mode="valid")
    return smooth


def _prominent_minima(
    values: NDArray[np.float64], min_prominence: float
) -> list[tuple[int, float]]:
    """(index, prominence) of the local minima of a closed sequence.

    The prominence of a minimum is how far the sequence must rise, on the lower of its
    two sides, before it can reach a lower value (or come back round): the depth of the
    minimum's own dip. Minima less prominent than ``min_prominence`` are dropped; of a
    flat run only its first point is kept.
    """
    count = len(values)
    if count < 3:
        return []
    before, after = np.roll(values, 1), np.roll(values, -1)
    candidates = np.nonzero((values < before) & (values <= after))[0]
    found = []
    for index in candidates:
        turned = np.roll(values, -int(index))  # the minimum at 0, going forward
        level = turned[0]
        forward, backward = turned[1:], turned[:0:-1]
        rises = []
        for side in (forward, backward):
            lower = np.nonzero(side < level)[0]
            stop = int(lower[0]) if lower.size else len(side)
            rises.append(float(side[:stop].max()) - level if stop else 0.0)
        prominence = min(rises)
        if prominence >= min_prominence:
            found.append((int(index), prominence))
    return found


def _opening(points: NDArray[np.float64], index: int, arm: int) -> tuple[Point, float]:
    """Unit opening direction and spread (degrees) of the gap whose bottom is ``index``.

    The arms are the contour points ``arm`` steps before and after the bottom; the
    opening is the direction from the bottom to their midpoint, the spread the angle
    between the two arms.
    """
    count = len(points)
    bottom = points[index]
    before = points[(index - arm) % count] - bottom
    after = points[(index + arm) % count] - bottom
    mouth = (before + after) / 2.0
    direction: Point = mouth / max(float(np.hypot(*mouth)), 1e-9)
    cos = float(before @ after) / max(float(np.hypot(*before) * np.hypot(*after)), 1e-9)
    return direction, math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def find_valleys(hand: Hand) -> list[Valley]:
    """Candidate finger valleys of ``hand``, in contour order.

    A valley is a prominent local minimum of the distance from the palm centre along
    the hand contour (the radial profile, smoothed over ``ROI_VALLEY_SMOOTH`` x radius
    contour steps): the innermost point of a gap between two fingers, of a notch left
    by a peg, or of the web of the thumb. It is kept when its dip is at least
    ``ROI_VALLEY_MIN_DEPTH`` x radius deep, within ``ROI_VALLEY_MAX_DISTANCE`` x radius
    of the palm centre, not on the image border, and opening away from the centre. Its
    opening direction and spread come from its arm ends (``ROI_VALLEY_ARM`` x radius of
    contour on each side).
    """
    points = hand.contour[:, 0, :].astype(np.float64)
    count = len(points)
    if count < 8:
        return []
    centre = np.array(hand.centre)
    radial = np.hypot(*(points - centre).T)
    width = max(3, round(P.ROI_VALLEY_SMOOTH * hand.radius) | 1)
    smooth = _circular_smooth(radial, width)
    height, width_px = hand.mask.shape
    arm = max(2, round(P.ROI_VALLEY_ARM * hand.radius))
    valleys = []
    for index, depth in _prominent_minima(smooth, P.ROI_VALLEY_MIN_DEPTH * hand.radius):
        window = (index + np.arange(-(width // 2), width // 2 + 1)) % count
        index = int(window[int(np.argmin(radial[window]))])
        bottom = points[index]
        outward, spread = _opening(points, index, arm)
        on_border = min(bottom[0], bottom[1], width_px - 1 - bottom[0], height - 1 - bottom[1]) < 2
        away = float(outward @ (bottom - centre)) > 0.0
        if radial[index] <= P.ROI_VALLEY_MAX_DISTANCE * hand.radius and not on_border and away:
            valleys.append(Valley(bottom, index, depth, outward, spread))
    return sorted(valleys, key=lambda valley: valley.index)


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


def key_unit(distance: float, radius: float) -> float:
    """The palm frame's unit (px) from the key-point distance and the palm radius (px).

    The weighted geometric mean of the key-point distance ``d`` and
    ``ROI_KEY_RADIUS_RATIO`` x the inscribed-circle radius (weight
    ``ROI_KEY_RADIUS_WEIGHT`` on the radius): equal to ``d`` for a typical hand, and
    half as sensitive to a key point that slid along its gap (see ``identity/params.py``).
    """
    weight = P.ROI_KEY_RADIUS_WEIGHT
    radius_unit = max(P.ROI_KEY_RADIUS_RATIO * radius, 1e-9)
    return math.exp((1.0 - weight) * math.log(max(distance, 1e-9)) + weight * math.log(radius_unit))


def palm_frame(hand: Hand, pair: tuple[Valley, Valley]) -> PalmFrame:
    """Palm coordinate system from the key valleys, refined to the common tangent points.

    The origin is the tangent points' midpoint, the x axis runs along their line, the
    y axis points towards the palm centre; the unit (``PalmFrame.spacing``) is
    :func:`key_unit` of their distance and the palm radius.
    """
    a, b = pair
    centre = np.array(hand.centre)
    reach = P.ROI_KEY_TANGENT_REACH * float(np.hypot(*(b.bottom - a.bottom)))
    touch = _tangent(
        _gap_points(hand.contour, a, reach), _gap_points(hand.contour, b, reach), centre
    )
    first, second = touch if touch is not None else (a.bottom, b.bottom)
    offset = second - first
    distance = max(float(np.hypot(*offset)), 1e-9)
    x_axis = offset / distance
    y_axis = np.array([-x_axis[1], x_axis[0]])
    origin = (first + second) / 2.0
    if float((centre - origin) @ y_axis) < 0:
        first, second, x_axis = second, first, -x_axis
        y_axis = np.array([-x_axis[1], x_axis[0]])
    return PalmFrame(first, second, origin, x_axis, y_axis, key_unit(distance, hand.radius))


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


def _finger_pixels(hand: Hand) -> NDArray[np.bool_]:
    """Hand pixels that an opening with a disc of ``ROI_FINGER_OPENING`` x radius removes:
    bool, the shape of ``hand.mask``.

    The opening is computed with two exact Euclidean distance transforms (Felzenszwalb and
    Huttenlocher, "Distance transforms of sampled functions", 2012; OpenCV's
    ``DIST_MASK_PRECISE``), whose cost does not grow with the disc: erosion keeps the
    pixels farther than the disc's radius from the background, dilation the pixels within
    the radius of those. Outside the image counts as background, as in a morphological
    opening with a zero border. Since 2026-12-01 (night); it replaced ``cv2.morphologyEx`` with an
    elliptical kernel (12.9 -> about 3 ms per call on 640 x 480 PolyU frames, two calls per
    whole hand), from which it differs by 1-2 % of the finger pixels on the disc's rim
    (the digital ellipse against the Euclidean disc).
    """
    size = max(3, round(P.ROI_FINGER_OPENING * hand.radius) | 1)
    radius = size / 2.0
    inside = (hand.mask > 0).astype(np.uint8)
    padded = cv2.copyMakeBorder(inside, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    to_background = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    eroded = (to_background > radius).astype(np.uint8)
    to_eroded = cv2.distanceTransform(1 - eroded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    opened = to_eroded[1:-1, 1:-1] <= radius
    fingers: NDArray[np.bool_] = (inside > 0) & ~opened
    return fingers


def finger_pixels(hand: Hand) -> NDArray[np.bool_]:
    """The finger pixels of ``hand`` (see :func:`finger_direction`), to share between calls.

    The opening with a disc of ``ROI_FINGER_OPENING`` x radius is one of the costlier
    steps of the ROI; compute it once per hand.
    """
    return _finger_pixels(hand)


def _part_directions(
    labels: NDArray[Any], count: int, xs: NDArray[np.intp], ys: NDArray[np.intp],
    units: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``(count, 2)`` unit mean direction of each labelled part from ``units`` of its pixels."""
    lab = labels[ys, xs]
    sums = np.stack(
        [np.bincount(lab, units[:, 0], count), np.bincount(lab, units[:, 1], count)], axis=1
    )
    norms = np.maximum(np.hypot(*sums.T), 1e-12)
    directions: NDArray[np.float64] = sums / norms[:, None]
    return directions


def fingers_in_view(
    hand: Hand, pixels: NDArray[np.bool_] | None = None, fingers: Point | None = None
) -> tuple[int, int]:
    """How many fingers are seen whole, and how many are cut by the image border.

    Fingers are the connected parts of the finger pixels (see :func:`finger_direction`)
    of at least ``ROI_MIN_FINGER_AREA`` x radius^2 px; a part touching the image border
    is cut. A contact scanner's frame cuts the fingers; a whole hand shows them all.
    With ``fingers`` (unit finger direction), only parts whose direction from the palm
    centre (to their centroid) lies within ``ROI_FINGER_SIDE_DEG`` of it count: the
    wrist, or a sleeve or band at the image border, lies opposite the fingers and is
    no finger, cut or not. ``pixels``: the hand's :func:`finger_pixels`, when already
    computed.
    """
    mask = (_finger_pixels(hand) if pixels is None else pixels).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    height, width = mask.shape
    centre = np.array(hand.centre)
    limit = math.cos(math.radians(P.ROI_FINGER_SIDE_DEG))
    whole = cut = 0
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < P.ROI_MIN_FINGER_AREA * hand.radius**2:
            continue
        if fingers is not None:
            offset = centroids[label] - centre
            norm = float(np.hypot(*offset))
            if norm > 1e-9 and float(offset @ fingers) / norm < limit:
                continue
        if x > 0 and y > 0 and x + w < width and y + h < height:
            whole += 1
        else:
            cut += 1
    return whole, cut


def finger_direction(hand: Hand, pixels: NDArray[np.bool_] | None = None) -> Point | None:
    """Direction from the palm centre to the fingers (unit vector), None without fingers.

    Fingers are the hand parts that a morphological opening with a disc of
    ``ROI_FINGER_OPENING`` x radius removes (thin protrusions; outside the image counts
    as background, so fingers cut by the border are removed too), farther than
    ``ROI_FINGER_MIN_DISTANCE`` x radius from the palm centre; at least
    ``ROI_MIN_FINGER_AREA`` x radius^2 px of them are needed. The direction is the mean
    of the unit vectors from the centre to their pixels, taken again without the
    connected parts whose own mean direction lies more than ``ROI_FINGER_SIDE_DEG``
    from it (a wrist band or sleeve cut by the image border, opposite the fingers, would
    otherwise turn it). ``pixels``: the hand's :func:`finger_pixels`, when already
    computed.
    """
    mask = _finger_pixels(hand) if pixels is None else pixels
    ys, xs = np.nonzero(mask)
    offsets = np.stack([xs - hand.centre[0], ys - hand.centre[1]], axis=1).astype(np.float64)
    norms = np.hypot(*offsets.T)
    far = norms > P.ROI_FINGER_MIN_DISTANCE * hand.radius
    minimum = P.ROI_MIN_FINGER_AREA * hand.radius**2
    if float(far.sum()) < minimum:
        return None
    units = offsets[far] / norms[far, None]
    mean = units.sum(axis=0)
    norm = float(np.hypot(*mean))
    if norm <= 1e-9:
        return None
    count, labels = cv2.connectedComponents(mask.astype(np.uint8))
    parts = _part_directions(labels, count, xs[far], ys[far], units)
    limit = math.cos(math.radians(P.ROI_FINGER_SIDE_DEG))
    finger_side = (parts @ (mean / norm)) >= limit
    kept = finger_side[labels[ys[far], xs[far]]]
    if kept.sum() >= minimum:
        mean = units[kept].sum(axis=0)
        norm = float(np.hypot(*mean))
    direction: Point | None = mean / norm if norm > 1e-9 else None
    return direction
