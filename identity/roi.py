"""Palm region of interest (ROI): pass-through of ready ROIs, or extraction from a whole hand.

Two kinds of input reach :func:`extract_roi`:

* an image that already is a palm ROI (e.g. the Tongji or PolyU 128x128 ROIs):
  recognised from its content (square, no dark background, texture everywhere, and
  that texture oriented like palm lines rather than isotropic like noise) and passed
  through, resized to ``ROI_SIZE``;
* a whole-hand image (bright hand on a darker background, contact or contactless,
  or a darker hand on a light, flat background such as paper; left or right, any
  in-plane rotation): the hand is segmented
  (:mod:`identity.roi_segment`, Otsu mask and a lower-level outline for the valleys),
  the finger valleys are found on the outline (:mod:`identity.roi_keypoints`) and the
  index-middle / ring-little pair is chosen (:mod:`identity.roi_pairs`). When the
  fingers are cut by the frame or faded (a contact scanner), the ROI is the square
  of the palm coordinate system of Zhang, Kong, You and Wong, "Online palmprint
  identification", IEEE TPAMI 25(9), 2003: the common tangent of the two gaps is the
  x axis, the square (side ``ROI_KEY_SIDE`` x u) hangs ``ROI_KEY_OFFSET`` x u below
  it, centred on the perpendicular through the midpoint; the unit u blends the
  key-point distance with the palm radius (:func:`identity.roi_keypoints.key_unit`).
  When all fingers are seen whole (a sleeve or band at the wrist does not count as a
  cut finger), the square sits on the palm's largest inscribed circle (side
  ``ROI_CIRCLE_SIDE`` x radius), fingers up along the finger pixels' direction (see
  :func:`_candidate_frames`). Each image takes one regime, with no fallback from one
  to the other: a palm whose captures took different squares got templates that did
  not match. The square is rotated and scaled to ``ROI_SIZE`` x ``ROI_SIZE``. A left
  hand gives the mirror image of what the same palm would give as a right hand.

The quality gate (:mod:`identity.roi_quality` and the checks here) raises
:class:`AcquisitionError` (failure to acquire) with a reason: "no hand found",
"fingers closed", "fingers closed or palm out of frame" (fingers cut and no plausible
valley pair), "palm out of frame", "too dark", "saturated", "blurred", "no palm texture"
(a frame-filling image without oriented texture, e.g. noise: pass-throughs only, see
:func:`identity.roi_quality.check_palm_texture`); no ``uint8`` image makes this module
crash.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.errors import AcquisitionError, InvalidImageError
from identity.roi_keypoints import (
    PalmFrame,
    Point,
    Valley,
    circle_frame,
    find_valleys,
    finger_direction,
    finger_pixels,
    fingers_in_view,
    opening_direction,
    palm_frame,
)
from identity.roi_pairs import rank_key_pairs
from identity.roi_quality import (
    DebugHook,
    GrayImage,
    LevelCounts,
    check_exposure,
    check_saturation,
    emit,
    ensure_palm_texture,
    finish_roi,
    orientation_coherence,
)
from identity.roi_segment import Hand, border_fraction, in_frame_circle, segment_hand

__all__ = ["DebugHook", "RoiResult", "extract_roi", "looks_like_roi"]


@dataclass(frozen=True)
class RoiResult:
    """A palm ROI and the measurements made while extracting it.

    Attributes:
        roi: ``(ROI_SIZE, ROI_SIZE)`` ``uint8`` grey palm ROI, fingers towards row 0.
        passthrough: True when the input already was a ROI and was only resized.
        sharpness: variance of the Laplacian of ``roi`` (grey levels squared).
        brightness: mean grey level of ``roi`` before contrast normalisation.
        centre: ROI centre ``(x, y)`` in input pixels; ``None`` for a pass-through.
        radius: palm inscribed-circle radius in input pixels; ``None`` for a pass-through.
        angle_deg: counter-clockwise rotation applied to bring the fingers up (degrees);
            ``0.0`` for a pass-through.
        key_points: the two finger-valley key points ``((x, y), (x, y))`` in input
            pixels (x axis of the palm frame from the first to the second); ``None``
            for a pass-through, or when no valley pair agreed with the finger direction.
        side: ROI square side in input pixels; ``None`` for a pass-through.
    """

    roi: GrayImage
    passthrough: bool
    sharpness: float
    brightness: float
    centre: tuple[float, float] | None = None
    radius: float | None = None
    angle_deg: float = 0.0
    key_points: tuple[tuple[float, float], tuple[float, float]] | None = None
    side: float | None = None


def _resize_to_max_side(gray: GrayImage, max_side: int) -> tuple[GrayImage, float]:
    """Downscale (area interpolation) so the longer side is at most ``max_side``; scale factor."""
    height, width = gray.shape
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return gray, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small: GrayImage = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    return small, scale


def _analysis_copy(gray: GrayImage) -> NDArray[np.float32] | None:
    """``float32`` copy shrunk to ``ROI_ANALYSIS_SIDE``; None when the image is not square-ish."""
    height, width = gray.shape
    if max(height, width) > P.ROI_PASSTHROUGH_MAX_ASPECT * min(height, width):
        return None
    small, _ = _resize_to_max_side(gray, P.ROI_ANALYSIS_SIDE)
    return small.astype(np.float32) if min(small.shape) >= 8 else None


def _on_blown_out_background(image: GrayImage) -> bool:
    """Whether the saturated pixels (>= ``ROI_SATURATION_LEVEL``) are a light background:
    they hold more than ``ROI_LIGHT_BACKGROUND_BORDER`` of the image border, and the rest
    covers at least ``ROI_MIN_HAND_AREA_FRACTION`` of the image (room for a hand).

    Such a frame (a hand on white paper in strong light, or a cut-out on white) is not
    refused as saturated as a whole: the hand's own pixels are checked once it is
    segmented (``check_exposure`` of the hand, then of the ROI).
    """
    saturated = (image >= P.ROI_SATURATION_LEVEL).astype(np.uint8)
    rest = 1.0 - float(saturated.mean())
    return (rest >= P.ROI_MIN_HAND_AREA_FRACTION
            and border_fraction(saturated) > P.ROI_LIGHT_BACKGROUND_BORDER)


def _oblong_roi_square(image: GrayImage) -> GrayImage | None:
    """The centred square of an oblong ROI, or None.

    A frame longer than ``ROI_PASSTHROUGH_MAX_ASPECT`` but at most
    ``ROI_OBLONG_MAX_ASPECT`` times its width (e.g. a set of 160 x 128 px palm ROIs) is
    a ROI when the whole frame is palm as a square ROI must be (no dark background,
    :func:`_frame_is_palm`; skin texture in every tile, :func:`_texture_fills_frame`):
    its centred square (side = the shorter side) then goes through the pass-through
    checks. Without this, such a frame went to the whole-hand path, which found "finger
    valleys" in the palm texture and cut nonsense out of it. A hand on a light, flat
    background fails the texture test and stays a whole hand.
    """
    height, width = image.shape
    longer, shorter = max(height, width), min(height, width)
    if not (P.ROI_PASSTHROUGH_MAX_ASPECT * shorter < longer <= P.ROI_OBLONG_MAX_ASPECT * shorter):
        return None
    small, _ = _resize_to_max_side(image, P.ROI_ANALYSIS_SIDE)
    if min(small.shape) < 8:
        return None
    copy = small.astype(np.float32)
    if not (_frame_is_palm(copy) and _texture_fills_frame(copy)):
        return None
    top, left = (height - shorter) // 2, (width - shorter) // 2
    return np.ascontiguousarray(image[top:top + shorter, left:left + shorter])


def _frame_is_palm(small: NDArray[np.float32]) -> bool:
    """No dark background: at most ``ROI_PASSTHROUGH_MAX_DARK_FRACTION`` of the blurred
    pixels below ``ROI_DARK_LEVEL_OF_P90`` x their 90th percentile (``np.percentile``).

    The dark fraction only grows with the level, so the percentile is first bracketed
    by the blurred pixels rounded to ``uint8`` (:func:`_p90_bracket`): when the fraction
    at the bracket's top level is within the limit, or the one at its bottom level is
    not, that is the answer; only in between is ``np.percentile`` (a partial sort,
    several times slower) computed.
    """
    blurred = np.asarray(cv2.GaussianBlur(small, (0, 0), P.ROI_ANALYSIS_BLUR_SIGMA), np.float32)

    def dark_fraction(level: float) -> float:
        return float(np.count_nonzero(blurred < P.ROI_DARK_LEVEL_OF_P90 * level)) / blurred.size

    limit = P.ROI_PASSTHROUGH_MAX_DARK_FRACTION
    bracket = _p90_bracket(blurred)
    if bracket is not None:
        if dark_fraction(bracket[1]) <= limit:
            return True
        if dark_fraction(bracket[0]) > limit:
            return False
    return dark_fraction(float(np.percentile(blurred, 90))) <= limit


def _p90_bracket(blurred: NDArray[np.float32]) -> tuple[float, float] | None:
    """Levels ``(low, high)`` with ``low <= np.percentile(blurred, 90) <= high``, or None.

    ``blurred``: non-negative (a blur of grey levels). The pixels rounded to ``uint8``
    (``cv2.convertScaleAbs``) keep their order, and each lies within 1 of its rounded
    value while that is neither 0 nor 255 (saturated: None then); the percentile lies
    between the rounded order statistics around its rank
    (:meth:`identity.roi_quality.LevelCounts.percentile_bounds`), widened by 1.
    """
    rounded = LevelCounts(np.asarray(cv2.convertScaleAbs(blurred), dtype=np.uint8))
    low, high = rounded.percentile_bounds(90)
    if low == 0 or high == 255:
        return None
    return float(low - 1), float(high + 1)


def _texture_fills_frame(small: NDArray[np.float32]) -> bool:
    """Every tile of a 4x4 grid has high-pass std >= ``ROI_PASSTHROUGH_MIN_TILE_TEXTURE``.

    The std is numpy's ``float32`` ``std`` of each tile (a contiguous copy, so the same
    sums as a fancy-indexed copy). It is first estimated for all tiles at once in
    ``float64`` (:func:`_tile_stds`); the estimate differs from numpy's by rounding
    only (under 1e-5 of the value for a tile of at most 32 x 32 pixels), so when no
    tile lies within ``_TILE_STD_MARGIN`` of the threshold it decides, and numpy's
    tile by tile measure is only computed otherwise.
    """
    highpass = small - cv2.GaussianBlur(small, (0, 0), P.ROI_TEXTURE_SIGMA)
    rows = _tile_bounds(small.shape[0], 4)
    cols = _tile_bounds(small.shape[1], 4)
    threshold = P.ROI_PASSTHROUGH_MIN_TILE_TEXTURE
    estimate = _tile_stds(highpass, rows, cols)
    if bool(np.all(np.abs(estimate - threshold) > _TILE_STD_MARGIN * threshold)):
        return bool(estimate.min() >= threshold)
    # Contiguous copies of slices: the same values in the same order as fancy indexing
    # gave, so the same sums, at a fraction of the cost.
    tile_std = [float(np.ascontiguousarray(highpass[r0:r1, c0:c1]).std())
                for r0, r1 in rows for c0, c1 in cols]
    return min(tile_std) >= threshold


_TILE_STD_MARGIN = 0.01
"""Relative distance from the tile-texture threshold within which :func:`_texture_fills_frame`
measures each tile as numpy does instead of trusting the ``float64`` estimate."""


def _tile_stds(highpass: NDArray[np.float32], rows: list[tuple[int, int]],
               cols: list[tuple[int, int]]) -> NDArray[np.float64]:
    """``(len(rows), len(cols))`` population std of each tile of ``highpass`` (tiles:
    ``[start, stop)`` bounds, consecutive from 0, non-empty), from ``float64`` sums of
    values and squares per tile (``cv2.integral2``)."""
    sums, squares = cv2.integral2(highpass, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    row_edges = [0, *(r1 for _, r1 in rows)]
    col_edges = [0, *(c1 for _, c1 in cols)]

    def tile_sums(integral: object) -> NDArray[np.float64]:
        corners = np.asarray(integral, np.float64)[np.ix_(row_edges, col_edges)]
        return np.diff(np.diff(corners, axis=0), axis=1)

    counts = np.outer(np.diff(row_edges), np.diff(col_edges))
    mean = tile_sums(sums) / counts
    variance = tile_sums(squares) / counts - mean * mean
    stds: NDArray[np.float64] = np.sqrt(np.maximum(variance, 0.0))
    return stds


def _tile_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of ``parts`` near-equal runs of ``range(length)``, the first
    ones longer by one when it does not divide (as ``np.array_split``)."""
    size, extra = divmod(length, parts)
    bounds, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def looks_like_roi(gray: GrayImage) -> bool:
    """Whether ``gray`` already is a palm ROI rather than a picture of a whole hand.

    Decided from content: roughly square (aspect <= ``ROI_PASSTHROUGH_MAX_ASPECT``), no
    dark background (at most ``ROI_PASSTHROUGH_MAX_DARK_FRACTION`` of the blurred
    pixels below ``ROI_DARK_LEVEL_OF_P90`` x the 90th percentile level), skin texture
    in every tile of a 4x4 grid (high-pass std >= ``ROI_PASSTHROUGH_MIN_TILE_TEXTURE``)
    and oriented texture (:func:`identity.roi_quality.orientation_coherence` >=
    ``ROI_MIN_ORIENTATION_COHERENCE``; white noise is isotropic).

    Args:
        gray: ``(H, W)`` ``uint8`` image, H, W >= 1.

    Returns:
        True for a ROI-like image.
    """
    small = _analysis_copy(gray)
    return (
        small is not None
        and _frame_is_palm(small)
        and _texture_fills_frame(small)
        and orientation_coherence(small) >= P.ROI_MIN_ORIENTATION_COHERENCE
    )


def _whole_hand(
    hand: Hand,
    outline: Hand,
    pixels: NDArray[np.bool_],
    outline_pixels: NDArray[np.bool_],
    fingers: Point | None,
) -> bool:
    """Whether all fingers are in the frame.

    At least ``ROI_WHOLE_HAND_FINGERS`` fingers are seen whole on the Otsu mask (four:
    a thumb lying against the index finger makes one part with it), at most
    ``ROI_WHOLE_HAND_MAX_CUT`` is cut by the image border there, and no more are cut by
    the border on the outline than on the mask (the faint finger tips of a contactless
    NIR camera reach the border only at the outline's lower level). Only parts on the
    finger side of the palm count (``fingers``, see
    :func:`identity.roi_keypoints.fingers_in_view`): a wrist, sleeve or band leaving the
    frame opposite the fingers is no cut finger.
    """
    if fingers is None:
        return False
    whole, cut = fingers_in_view(hand, pixels, fingers)
    _, outline_cut = fingers_in_view(outline, outline_pixels, fingers)
    return (
        whole >= P.ROI_WHOLE_HAND_FINGERS
        and cut <= P.ROI_WHOLE_HAND_MAX_CUT
        and outline_cut <= cut
    )


def _candidate_frames(hand: Hand) -> tuple[list[PalmFrame], bool, list[Valley]]:
    """Palm frames to try in order, whether they carry key points, and the valleys.

    The valleys are looked for on the hand's outline (``Hand.outline``, the hand at a
    lower grey level). One regime per image, never a mix of the two for one palm:

    * a whole hand (all fingers in the frame, :func:`_whole_hand`): the inscribed-circle
      frame of the Otsu mask (``circle_frame``; the circle kept inside the image,
      :func:`identity.roi_segment.in_frame_circle`), the finger direction from the finger
      pixels (``finger_direction``); the best key pair is only reported. Measured on the
      tuning halves, this beat the key frame on whole hands held against pegs
      (coep-hand: EER 2.7 % against 18-27 %);
    * otherwise (fingers cut by the frame of a contact scanner, or faded): each
      plausible key pair (:func:`rank_key_pairs`) gives a frame on its two tangent
      points (``palm_frame``), best first. Without a plausible pair the capture fails
      to acquire ("fingers closed or palm out of frame"): the inscribed-circle square
      that used to stand in lies elsewhere on the palm and at another scale, so its
      template did not match the same palm's key-point templates (measured on the
      tuning halves: PolyU EER 0.33 % with it, 0.05 % without; the held-out half then
      fails to acquire 6 of 600 captures instead of 0, FTA 1.0 %).

    The finger direction falls back on the valley openings (``opening_direction``).

    Raises:
        AcquisitionError: "fingers closed" (no finger direction), "fingers closed or
            palm out of frame" (no plausible key pair on a hand whose fingers are cut).
    """
    outline = hand.outline or hand
    valleys = find_valleys(outline)
    pixels, outline_pixels = finger_pixels(hand), finger_pixels(outline)
    hand_fingers = finger_direction(hand, pixels)
    whole = _whole_hand(hand, outline, pixels, outline_pixels, hand_fingers)
    fingers = hand_fingers if whole else finger_direction(outline, outline_pixels)
    if fingers is None:
        fingers = opening_direction(valleys)
    if fingers is None:
        raise AcquisitionError("fingers closed (no finger valley on the hand contour)")
    outline_fingers = finger_direction(outline, outline_pixels) if whole else fingers
    ranked = rank_key_pairs(valleys, outline, outline_fingers)
    if whole:
        keys = None
        if ranked:
            best = palm_frame(outline, (ranked[0][1], ranked[0][2]))
            keys = (best.first, best.second)
        return [circle_frame(in_frame_circle(hand), fingers, keys)], keys is not None, valleys
    if not ranked:
        raise AcquisitionError(
            "fingers closed or palm out of frame (no plausible pair of finger valleys)"
        )
    return [palm_frame(outline, (a, b)) for _, a, b in ranked], True, valleys


def _placeable_frame(work: GrayImage, debug: DebugHook | None) -> tuple[Hand, PalmFrame, bool]:
    """Segment the hand; the first candidate palm frame (working px) whose ROI square
    passes :func:`_check_in_frame`, and True when it carries key points.

    Raises the best candidate's failure when no frame fits.
    """
    hand = segment_hand(work, debug)
    check_exposure(work[hand.mask > 0], "hand")
    frames, paired, valleys = _candidate_frames(hand)
    chosen: PalmFrame | None = None
    first_error: AcquisitionError | None = None
    for frame in frames:
        try:
            _check_in_frame(_square_corners(frame), hand, P.ROI_KEY_SIDE * frame.spacing)
        except AcquisitionError as error:
            first_error = first_error or error
            continue
        chosen = frame
        break
    if debug is not None:
        emit(debug, "keypoints", _overlay(work, hand, chosen or frames[0], valleys))
    if chosen is None:
        assert first_error is not None
        raise first_error
    return hand, chosen, paired


def _square_corners(frame: PalmFrame) -> NDArray[np.float64]:
    """``(4, 2)`` corners of the ROI square in working px: top-left, top-right, ..."""
    side = P.ROI_KEY_SIDE * frame.spacing
    top = frame.origin + frame.y_axis * P.ROI_KEY_OFFSET * frame.spacing
    left = top - frame.x_axis * side / 2.0
    return np.array(
        [
            left,
            left + frame.x_axis * side,
            left + (frame.x_axis + frame.y_axis) * side,
            left + frame.y_axis * side,
        ]
    )


def _overlay(work: GrayImage, hand: Hand, frame: PalmFrame, valleys: list[Valley]) -> GrayImage:
    """Debug picture: contour, valleys, key points and the ROI square on the work image."""
    picture = (work // 2).astype(np.uint8)
    cv2.drawContours(picture, [(hand.outline or hand).contour], -1, 255, 1)
    for valley in valleys:
        tip = valley.bottom + valley.outward * 3.0 * valley.depth**0.5
        cv2.circle(picture, (round(valley.bottom[0]), round(valley.bottom[1])), 4, 160, 1)
        cv2.line(
            picture,
            (round(valley.bottom[0]), round(valley.bottom[1])),
            (round(tip[0]), round(tip[1])),
            200,
            1,
        )
    for point in (frame.first, frame.second):
        cv2.circle(picture, (round(point[0]), round(point[1])), 3, 255, cv2.FILLED)
    corners = np.round(_square_corners(frame)).astype(np.int32)
    cv2.polylines(picture, [corners.reshape(-1, 1, 2)], True, 255, 1)
    return picture


def _check_in_frame(corners: NDArray[np.float64], hand: Hand, side: float) -> None:
    """Raise "palm out of frame" / "no palm found" when the square leaves the image or hand."""
    height, width = hand.mask.shape
    beyond = np.maximum.reduce(
        [-corners[:, 0], -corners[:, 1], corners[:, 0] - (width - 1), corners[:, 1] - (height - 1)]
    )
    overflow = max(0.0, float(beyond.max())) / side
    if overflow > P.ROI_MAX_OUT_OF_FRAME:
        raise AcquisitionError(
            f"palm out of frame (ROI square {overflow:.0%} of its side beyond the image border, "
            f"limit {P.ROI_MAX_OUT_OF_FRAME:.0%})"
        )
    grid = np.linspace(0.05, 0.95, 10)
    u, v = np.meshgrid(grid, grid)
    samples = (
        corners[0]
        + u.reshape(-1, 1) * (corners[1] - corners[0])
        + v.reshape(-1, 1) * (corners[3] - corners[0])
    )
    xs = np.clip(np.round(samples[:, 0]).astype(int), 0, width - 1)
    ys = np.clip(np.round(samples[:, 1]).astype(int), 0, height - 1)
    on_hand = float(hand.mask[ys, xs].mean())
    if on_hand < P.ROI_MIN_ON_HAND:
        raise AcquisitionError(
            f"no palm found (only {on_hand:.0%} of the ROI square on the hand, "
            f"needs {P.ROI_MIN_ON_HAND:.0%})"
        )


def _crop(gray: GrayImage, frame: PalmFrame, scale: float) -> GrayImage:
    """Rotate and scale the ROI square of ``frame`` (working px) out of the full image."""
    corners = _square_corners(frame) / scale
    side = P.ROI_KEY_SIDE * frame.spacing / scale
    zoom = P.ROI_SIZE / side
    # Pre-shrink with area averaging so the final warp never decimates (no aliasing).
    pre = min(1.0, P.ROI_PRESHRINK_HEADROOM * zoom)
    source, pre = _resize_to_max_side(gray, max(1, int(max(gray.shape) * pre)))
    x_step = (corners[1] - corners[0]) * pre / P.ROI_SIZE  # one ROI pixel along x, source px
    y_step = (corners[3] - corners[0]) * pre / P.ROI_SIZE
    origin = corners[0] * pre + (x_step + y_step) / 2.0
    inverse = np.array([[x_step[0], y_step[0], origin[0]], [x_step[1], y_step[1], origin[1]]])
    roi = cv2.warpAffine(
        source,
        inverse,
        (P.ROI_SIZE, P.ROI_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return roi.astype(np.uint8)


def _from_whole_hand(image: GrayImage, debug: DebugHook | None) -> RoiResult:
    """The ROI of the first placeable frame, through the quality gate
    (:func:`identity.roi_quality.finish_roi`).

    A crop that fails the gate is a failure to acquire: no other frame is tried, since
    another key pair or the inscribed circle would give a differently placed ROI whose
    template does not match the palm's other captures.
    """
    work, scale = _resize_to_max_side(image, P.ROI_SEGMENT_MAX_SIDE)
    hand, frame, paired = _placeable_frame(work, debug)
    roi, sharpness, brightness = finish_roi(_crop(image, frame, scale), debug)
    return _result(roi, sharpness, brightness, hand, frame, paired, scale)


def _result(roi: GrayImage, sharpness: float, brightness: float, hand: Hand,
            frame: PalmFrame, paired: bool, scale: float) -> RoiResult:
    corners = _square_corners(frame)
    centre = corners.mean(axis=0) / scale
    angle = -float(np.degrees(np.arctan2(-frame.x_axis[1], frame.x_axis[0])))
    first, second = frame.first / scale, frame.second / scale
    return RoiResult(
        roi=roi,
        passthrough=False,
        sharpness=sharpness,
        brightness=brightness,
        centre=(float(centre[0]), float(centre[1])),
        radius=hand.radius / scale,
        angle_deg=angle,
        side=P.ROI_KEY_SIDE * frame.spacing / scale,
        key_points=(
            ((float(first[0]), float(first[1])), (float(second[0]), float(second[1])))
            if paired
            else None
        ),
    )


def _hand_on_flat_background(image: GrayImage, debug: DebugHook | None) -> RoiResult:
    """A square frame with no dark background whose texture does not fill it: a hand on
    a light, flat background (paper, a light table), or a blurred ROI.

    Tried as a whole hand; when no hand is found there, the frame is a blurred ROI and
    fails to acquire as "blurred" (the hand path's reason would mislead). A frame whose
    1st..99th percentile range is below ``ROI_HAND_MIN_RANGE`` grey levels is not tried
    (it fails as "blurred or low contrast"):
    no hand stands out from its background there, and the hand path would only find
    "fingers" in the faint texture of a ROI stored at very low contrast.

    Raises:
        AcquisitionError: "blurred or low contrast (...)", "blurred (no skin texture in
            part of the frame)".
    """
    low, high = LevelCounts(image).percentile((1, 99))
    if high - low < P.ROI_HAND_MIN_RANGE:
        raise AcquisitionError(
            f"blurred or low contrast (no skin texture in part of the frame, and a "
            f"1st..99th percentile range of {high - low:.0f} grey levels: a hand on a "
            f"light background needs {P.ROI_HAND_MIN_RANGE:.0f})")
    try:
        return _from_whole_hand(image, debug)
    except AcquisitionError:
        raise AcquisitionError("blurred (no skin texture in part of the frame)") from None


def _validated(gray: object) -> GrayImage:
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise InvalidImageError("extract_roi needs a 2-D uint8 grey image")
    if min(gray.shape) < P.ROI_MIN_INPUT_SIDE:
        raise AcquisitionError(
            f"image too small ({gray.shape[1]}x{gray.shape[0]} px; "
            f"each side must be at least {P.ROI_MIN_INPUT_SIDE} px)"
        )
    return np.ascontiguousarray(gray)


def extract_roi(gray: GrayImage, debug: DebugHook | None = None) -> RoiResult:
    """Palm ROI of a grey image: pass-through of a ready ROI, or extraction from a whole hand.

    Args:
        gray: ``(H, W)`` ``uint8`` grey image (a palm ROI, or a bright hand on a dark
            background or a darker one on a light, flat background, in any
            orientation, left or right).
        debug: optional hook called with each step's name and ``uint8`` image
            ("input", then "blurred", "mask", "distance", "keypoints" for a whole
            hand, and "roi").

    Returns:
        A :class:`RoiResult` whose ``roi`` is ``(ROI_SIZE, ROI_SIZE)`` ``uint8``.

    Raises:
        InvalidImageError: ``gray`` is not a 2-D ``uint8`` array.
        AcquisitionError: failure to acquire; ``reason`` says which check failed
            ("image too small", "too dark", "saturated", "no hand found",
            "fingers closed", "fingers closed or palm out of frame", "palm out of
            frame", "no palm found", "blurred ...", "no palm texture ..." for a
            frame-filling image whose texture is not oriented, e.g. noise).
    """
    image = _validated(gray)
    emit(debug, "input", image)
    levels = LevelCounts(image)
    low, high = levels.percentile_bounds(99)  # the exact percentile only when they straddle
    if high < P.ROI_MIN_MEAN_LEVEL or (
        low < P.ROI_MIN_MEAN_LEVEL and levels.percentile(99)[0] < P.ROI_MIN_MEAN_LEVEL
    ):
        raise AcquisitionError(f"too dark (99% of the pixels below {P.ROI_MIN_MEAN_LEVEL})")
    try:
        check_saturation(levels, "image")
    except AcquisitionError:
        if not _on_blown_out_background(image):  # looked at only for a saturated frame
            raise
    small = _analysis_copy(image)
    if small is None:
        square = _oblong_roi_square(image)
        if square is not None:
            image, small = square, _analysis_copy(square)
    if small is None or not _frame_is_palm(small):
        return _from_whole_hand(image, debug)
    # A square frame of skin with no background: a ROI, or a blurred / featureless one.
    if not _texture_fills_frame(small):
        return _hand_on_flat_background(image, debug)
    size = (P.ROI_SIZE, P.ROI_SIZE)
    interpolation = cv2.INTER_AREA if max(image.shape) > P.ROI_SIZE else cv2.INTER_LINEAR
    roi = cv2.resize(image, size, interpolation=interpolation).astype(np.uint8)
    roi, sharpness, brightness = finish_roi(roi, debug, native_side=min(image.shape))
    # Checked last, so "too dark", "saturated" and "blurred" keep their reasons.
    ensure_palm_texture(small)
    return RoiResult(roi=roi, passthrough=True, sharpness=sharpness, brightness=brightness)
