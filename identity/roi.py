"""Palm region of interest (ROI): pass-through of ready ROIs, or extraction from a whole hand.

Two kinds of input reach :func:`extract_roi`:

* an image that already is a palm ROI (e.g. the Tongji or PolyU 128x128 ROIs):
  recognised from its content (square, no dark background, texture everywhere) and
  passed through, resized to ``ROI_SIZE``;
* a whole-hand image (bright hand on a dark background): the hand is segmented (Otsu,
  largest contour), the palm centre is the maximum of the distance transform inside the
  hand (the maximum inscribed circle, as in Kumar et al., "Personal verification using
  palmprint and hand geometry biometric", AVBPA 2003, and Zhang et al., "Online palmprint
  identification", PAMI 2003 for the square central ROI), the fingers' direction is
  found by a morphological opening that removes the thin fingers, the hand is rotated
  fingers-up and a square of side ``ROI_SIDE_PER_RADIUS`` x radius is cropped.

A quality gate raises :class:`AcquisitionError` (failure to acquire) for inputs that
yield no usable ROI; no ``uint8`` image makes this module crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.errors import AcquisitionError, InvalidImageError

DebugHook = Callable[[str, NDArray[np.uint8]], None]
"""Called with (step name, ``uint8`` image of that step) when given to :func:`extract_roi`."""

GrayImage = NDArray[np.uint8]


@dataclass(frozen=True)
class RoiResult:
    """A palm ROI and the measurements made while extracting it.

    Attributes:
        roi: ``(ROI_SIZE, ROI_SIZE)`` ``uint8`` grey palm ROI, fingers towards row 0.
        passthrough: True when the input already was a ROI and was only resized.
        sharpness: variance of the Laplacian of ``roi`` (grey levels squared).
        brightness: mean grey level of ``roi`` before contrast normalisation.
        centre: palm centre ``(x, y)`` in input pixels; ``None`` for a pass-through.
        radius: palm inscribed-circle radius in input pixels; ``None`` for a pass-through.
        angle_deg: counter-clockwise rotation applied to bring the fingers up (degrees);
            ``0.0`` for a pass-through.
    """

    roi: GrayImage
    passthrough: bool
    sharpness: float
    brightness: float
    centre: tuple[float, float] | None = None
    radius: float | None = None
    angle_deg: float = 0.0


@dataclass(frozen=True)
class _Palm:
    """Palm geometry at working resolution: centre (x, y) px, radius px, finger direction."""

    centre: tuple[float, float]
    radius: float
    direction: tuple[float, float]


def _emit(debug: DebugHook | None, name: str, image: NDArray[np.generic]) -> None:
    if debug is not None:
        if image.dtype == np.bool_:
            image = image.astype(np.uint8) * 255
        elif image.dtype != np.uint8:
            values = image.astype(np.float64)
            span = max(float(values.max() - values.min()), 1e-9)
            image = ((values - values.min()) * (255.0 / span)).astype(np.uint8)
        debug(name, np.ascontiguousarray(image))


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


def _frame_is_palm(small: NDArray[np.float32]) -> bool:
    """No dark background: few blurred pixels below ``ROI_DARK_LEVEL_OF_P90`` x the p90 level."""
    blurred = cv2.GaussianBlur(small, (0, 0), P.ROI_ANALYSIS_BLUR_SIGMA)
    dark_level = P.ROI_DARK_LEVEL_OF_P90 * float(np.percentile(blurred, 90))
    return float(np.mean(blurred < dark_level)) <= P.ROI_PASSTHROUGH_MAX_DARK_FRACTION


def _texture_fills_frame(small: NDArray[np.float32]) -> bool:
    """Every tile of a 4x4 grid has high-pass std >= ``ROI_PASSTHROUGH_MIN_TILE_TEXTURE``."""
    highpass = small - cv2.GaussianBlur(small, (0, 0), P.ROI_TEXTURE_SIGMA)
    rows = np.array_split(np.arange(small.shape[0]), 4)
    cols = np.array_split(np.arange(small.shape[1]), 4)
    tile_std = [float(highpass[np.ix_(r, c)].std()) for r in rows for c in cols]
    return min(tile_std) >= P.ROI_PASSTHROUGH_MIN_TILE_TEXTURE


def looks_like_roi(gray: GrayImage) -> bool:
    """Whether ``gray`` already is a palm ROI rather than a picture of a whole hand.

    Decided from content: roughly square (aspect <= ``ROI_PASSTHROUGH_MAX_ASPECT``), no
    dark background (at most ``ROI_PASSTHROUGH_MAX_DARK_FRACTION`` of the blurred
    pixels below ``ROI_DARK_LEVEL_OF_P90`` x the 90th percentile level) and skin texture
    in every tile of a 4x4 grid (high-pass std >= ``ROI_PASSTHROUGH_MIN_TILE_TEXTURE``).

    Args:
        gray: ``(H, W)`` ``uint8`` image, H, W >= 1.

    Returns:
        True for a ROI-like image.
    """
    small = _analysis_copy(gray)
    return small is not None and _frame_is_palm(small) and _texture_fills_frame(small)


def _normalise_contrast(roi: GrayImage) -> GrayImage:
    """Stretch a low-contrast ROI so its 1st..99th percentiles span ``ROI_NORMALISED_RANGE``."""
    low, high = (float(v) for v in np.percentile(roi, (1, 99)))
    if high - low >= P.ROI_MIN_DYNAMIC_RANGE or high - low < 1.0:
        return roi
    gain = P.ROI_NORMALISED_RANGE / (high - low)
    stretched = (roi.astype(np.float32) - (low + high) / 2.0) * gain + 128.0
    result: GrayImage = np.clip(stretched, 0, 255).astype(np.uint8)
    return result


def _check_exposure(pixels: NDArray[np.uint8], where: str) -> None:
    """Raise AcquisitionError when ``pixels`` are too dark or too often saturated."""
    mean = float(pixels.mean())
    if mean < P.ROI_MIN_MEAN_LEVEL:
        raise AcquisitionError(f"too dark ({where} mean level {mean:.0f} < {P.ROI_MIN_MEAN_LEVEL})")
    _check_saturation(pixels, where)


def _check_saturation(pixels: NDArray[np.uint8], where: str) -> None:
    saturated = float(np.mean(pixels >= P.ROI_SATURATION_LEVEL))
    if saturated > P.ROI_MAX_SATURATED_FRACTION:
        raise AcquisitionError(
            f"saturated ({saturated:.0%} of the {where} at >= {P.ROI_SATURATION_LEVEL}, "
            f"limit {P.ROI_MAX_SATURATED_FRACTION:.0%})"
        )


def _finish(roi: GrayImage, debug: DebugHook | None) -> tuple[GrayImage, float, float]:
    """Quality-gate a cropped ``(ROI_SIZE, ROI_SIZE)`` ROI; (normalised roi, sharpness, mean)."""
    _check_exposure(roi, "ROI")
    brightness = float(roi.mean())
    roi = _normalise_contrast(roi)
    sharpness = float(cv2.Laplacian(roi, cv2.CV_64F).var())
    if sharpness < P.ROI_MIN_SHARPNESS:
        raise AcquisitionError(
            f"blurred (variance of Laplacian {sharpness:.1f} < {P.ROI_MIN_SHARPNESS})"
        )
    _emit(debug, "roi", roi)
    return roi, sharpness, brightness


def _segment_hand(work: GrayImage, debug: DebugHook | None) -> NDArray[np.uint8]:
    """Hand mask (0/1 ``uint8``, shape of ``work``): largest bright Otsu component, filled."""
    blurred = cv2.GaussianBlur(work, (0, 0), P.ROI_SEGMENT_BLUR_SIGMA)
    _emit(debug, "blurred", blurred)
    _, binary = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros_like(work)
    if contours:
        largest = max(contours, key=cv2.contourArea)
        cv2.drawContours(mask, [largest], -1, 1, thickness=cv2.FILLED)
    _emit(debug, "mask", mask * 255)
    if mask.all():
        raise AcquisitionError("no hand found (no dark background around a hand)")
    if float(mask.mean()) < P.ROI_MIN_HAND_AREA_FRACTION:
        raise AcquisitionError(
            f"no hand found (largest bright region {float(mask.mean()):.1%} of the image, "
            f"needs {P.ROI_MIN_HAND_AREA_FRACTION:.0%})"
        )
    return mask


def _palm_circle(mask: NDArray[np.uint8], debug: DebugHook | None) -> tuple[float, float, float]:
    """Maximum inscribed circle (x, y, radius px) of the hand mask.

    OpenCV's distance transform treats the space outside the image as foreground, so a
    palm cut by the image border keeps its true radius. Ties along a ridge (a palm
    spanning the whole frame) resolve to the middle of the near-maximal ridge.
    """
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    _emit(debug, "distance", distance)
    _, radius, _, (x, y) = cv2.minMaxLoc(distance)
    if radius < P.ROI_MIN_PALM_RADIUS_FRACTION * min(mask.shape):
        raise AcquisitionError(
            f"no hand found (palm radius {radius:.0f} px < "
            f"{P.ROI_MIN_PALM_RADIUS_FRACTION:.0%} of the image side)"
        )
    ridge = (distance >= P.ROI_CENTRE_TIE_FRACTION * radius).astype(np.uint8)
    _, labels = cv2.connectedComponents(ridge)
    ys, xs = np.nonzero(labels == labels[y, x])
    return float(xs.mean()), float(ys.mean()), float(radius)


def _unit(vector: NDArray[np.float64]) -> tuple[float, float] | None:
    norm = float(np.hypot(vector[0], vector[1]))
    return None if norm < 1e-9 else (float(vector[0] / norm), float(vector[1] / norm))


def _axis_direction(mask: NDArray[np.uint8], x: float, y: float) -> tuple[float, float]:
    """Fallback direction: the hand's principal axis, pointing away from the border it touches."""
    ys, xs = np.nonzero(mask)
    offsets = np.stack([xs - x, ys - y]).astype(np.float64)
    _, vectors = np.linalg.eigh(offsets @ offsets.T)
    axis = vectors[:, 1]
    height, width = mask.shape
    on_border = (xs == 0) | (ys == 0) | (xs == width - 1) | (ys == height - 1)
    # The arm leaves the frame, so the fingers point away from where the hand meets the border.
    away = -offsets[:, on_border].mean(axis=1) if on_border.any() else np.array([0.0, -1.0])
    return _unit(axis if float(axis @ away) >= 0 else -axis) or (0.0, -1.0)


def _valley_direction(
    mask: NDArray[np.uint8], x: float, y: float, radius: float
) -> tuple[float, float] | None:
    """Direction towards the finger valleys: depth-weighted deep convexity defects, if any.

    Used when the fingers are closed or cut by the frame (e.g. PolyU's peg-guided
    scanner), where the gaps between fingers still show as notches in the contour.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(contour, returnPoints=False)
    try:
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:  # self-intersecting hull order on degenerate contours
        return None
    if defects is None:
        return None
    defects = defects.reshape(-1, 4)
    depth = defects[:, 3].astype(np.float64) / 256.0
    deep = depth >= P.ROI_VALLEY_MIN_DEPTH * radius
    if not deep.any():
        return None
    points = contour[defects[deep, 2], 0, :].astype(np.float64)
    offsets = points - np.array([x, y])
    units = offsets / np.maximum(np.hypot(offsets[:, 0], offsets[:, 1]), 1e-9)[:, None]
    # Finger valleys come in a group; keep the largest group of mutually near directions
    # so that one stray notch (thumb web, a sleeve) does not pull the direction.
    near = (units @ units.T) >= math.cos(math.radians(P.ROI_VALLEY_GROUP_DEG))
    group = near[int(np.argmax(near.sum(axis=1)))]
    return _unit(units[group].sum(axis=0))


def _finger_direction(
    mask: NDArray[np.uint8], x: float, y: float, radius: float, debug: DebugHook | None
) -> tuple[float, float]:
    """Unit (dx, dy) from the palm centre towards the fingers (image axes, y down).

    Fingers are the mask parts an opening with a disc of ``ROI_FINGER_OPENING`` x radius
    removes, farther than ``ROI_FINGER_MIN_DISTANCE`` x radius from the centre.
    """
    size = max(3, int(round(P.ROI_FINGER_OPENING * radius)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc, borderValue=1)
    fingers = (mask > 0) & (opened == 0)
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    fingers &= np.hypot(xs - x, ys - y) > P.ROI_FINGER_MIN_DISTANCE * radius
    _emit(debug, "fingers", fingers)
    if float(fingers.sum()) < P.ROI_MIN_FINGER_AREA * radius * radius:
        return _valley_direction(mask, x, y, radius) or _axis_direction(mask, x, y)
    fy, fx = np.nonzero(fingers)
    dx, dy = fx - x, fy - y
    norms = np.hypot(dx, dy)
    return _unit(np.array([(dx / norms).sum(), (dy / norms).sum()])) or (0.0, -1.0)


def _locate_palm(work: GrayImage, debug: DebugHook | None) -> _Palm:
    """Segment the hand in the working image and return the palm geometry there."""
    mask = _segment_hand(work, debug)
    hand_pixels = work[mask > 0]
    _check_exposure(hand_pixels, "hand")
    x, y, radius = _palm_circle(mask, debug)
    direction = _finger_direction(mask, x, y, radius, debug)
    return _Palm(centre=(x, y), radius=radius, direction=direction)


def _fit_in_frame(palm: _Palm, shape: tuple[int, int], angle: float) -> tuple[float, float]:
    """Palm centre moved so the rotated ROI square lies inside the image (working px).

    Raises:
        AcquisitionError: the square would stick out by more than
            ``ROI_MAX_OUT_OF_FRAME`` of its side ("palm out of frame").
    """
    half = P.ROI_SIDE_PER_RADIUS * palm.radius / 2.0
    theta = math.radians(angle)
    reach = half * (abs(math.cos(theta)) + abs(math.sin(theta)))  # half-extent of the square
    (x, y), (height, width) = palm.centre, shape
    shift_x = max(0.0, reach - x) - max(0.0, x + reach - (width - 1))
    shift_y = max(0.0, reach - y) - max(0.0, y + reach - (height - 1))
    overflow = max(abs(shift_x), abs(shift_y)) / (2.0 * half)
    if overflow > P.ROI_MAX_OUT_OF_FRAME:
        raise AcquisitionError(
            f"palm out of frame (ROI square {overflow:.0%} of its side beyond the image border, "
            f"limit {P.ROI_MAX_OUT_OF_FRAME:.0%})"
        )
    return x + shift_x, y + shift_y


def _crop(
    gray: GrayImage, palm: _Palm, scale: float, work_shape: tuple[int, int]
) -> tuple[GrayImage, float, tuple[float, float]]:
    """Rotate fingers-up and crop the palm square from the full image.

    Returns (roi, counter-clockwise angle in degrees, ROI centre (x, y) in input px).
    """
    angle = 90.0 - math.degrees(math.atan2(-palm.direction[1], palm.direction[0]))
    wx, wy = _fit_in_frame(palm, work_shape, angle)
    cx, cy = wx / scale, wy / scale
    zoom = P.ROI_SIZE * scale / (P.ROI_SIDE_PER_RADIUS * palm.radius)
    # Pre-shrink with area averaging so the final warp never decimates (no aliasing).
    pre = min(1.0, P.ROI_PRESHRINK_HEADROOM * zoom)
    source, pre = _resize_to_max_side(gray, max(1, int(max(gray.shape) * pre)))
    matrix = cv2.getRotationMatrix2D((cx * pre, cy * pre), angle, zoom / pre)
    half = (P.ROI_SIZE - 1) / 2.0
    matrix[0, 2] += half - cx * pre
    matrix[1, 2] += half - cy * pre
    roi = cv2.warpAffine(
        source,
        matrix,
        (P.ROI_SIZE, P.ROI_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return roi.astype(np.uint8), angle, (cx, cy)


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
            background in any orientation, left or right).
        debug: optional hook called with each step's name and ``uint8`` image
            ("input", "blurred", "mask", "distance", "fingers", "roi").

    Returns:
        A :class:`RoiResult` whose ``roi`` is ``(ROI_SIZE, ROI_SIZE)`` ``uint8``.

    Raises:
        InvalidImageError: ``gray`` is not a 2-D ``uint8`` array.
        AcquisitionError: failure to acquire; ``reason`` says which check failed
            ("image too small", "too dark", "saturated", "no hand found",
            "palm out of frame", "blurred ...").
    """
    image = _validated(gray)
    _emit(debug, "input", image)
    if float(np.percentile(image, 99)) < P.ROI_MIN_MEAN_LEVEL:
        raise AcquisitionError(f"too dark (99% of the pixels below {P.ROI_MIN_MEAN_LEVEL})")
    _check_saturation(image, "image")
    small = _analysis_copy(image)
    if small is not None and _frame_is_palm(small):
        # A square frame of skin with no background: a ROI, or a blurred / featureless one.
        if not _texture_fills_frame(small):
            raise AcquisitionError("blurred (no skin texture in part of the frame)")
        size = (P.ROI_SIZE, P.ROI_SIZE)
        shrinking = max(image.shape) > P.ROI_SIZE
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        roi = cv2.resize(image, size, interpolation=interpolation).astype(np.uint8)
        roi, sharpness, brightness = _finish(roi, debug)
        return RoiResult(roi=roi, passthrough=True, sharpness=sharpness, brightness=brightness)
    work, scale = _resize_to_max_side(image, P.ROI_SEGMENT_MAX_SIDE)
    palm = _locate_palm(work, debug)
    roi, angle, centre = _crop(image, palm, scale, work.shape)
    roi, sharpness, brightness = _finish(roi, debug)
    return RoiResult(
        roi=roi,
        passthrough=False,
        sharpness=sharpness,
        brightness=brightness,
        centre=centre,
        radius=palm.radius / scale,
        angle_deg=angle,
    )
