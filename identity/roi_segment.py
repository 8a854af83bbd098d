"""Hand segmentation and palm centre for ROI extraction from whole-hand images.

The hand is the largest bright region after Otsu thresholding of a Gaussian-blurred
copy (Otsu, "A threshold selection method from gray-level histograms", IEEE SMC 1979),
holes filled (of the copy's negative when the background is light: most of the image
border bright); the palm centre and size are the maximum inscribed circle of the hand
(the maximum of the Euclidean distance transform, as in Kumar et al., "Personal
verification using palmprint and hand geometry biometric", AVBPA 2003).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.errors import AcquisitionError
from identity.roi_quality import DebugHook, GrayImage, emit

Contour = NDArray[np.int32]
"""``(N, 1, 2)`` ``int32`` OpenCV contour of (x, y) pixel positions."""


@dataclass(frozen=True)
class Hand:
    """A segmented hand at working resolution.

    Attributes:
        mask: ``(H, W)`` ``uint8`` 0/1 hand mask, holes filled.
        contour: outer contour of ``mask`` (every boundary pixel, in order).
        centre: palm centre (x, y) px, the centre of the maximum inscribed circle.
        radius: radius of that circle (px).
        outline: the hand seen at a lower grey level, for the finger valleys (see
            :func:`outline_hand`); ``None`` where not computed.
    """

    mask: NDArray[np.uint8]
    contour: Contour
    centre: tuple[float, float]
    radius: float
    outline: Hand | None = None


def _largest_region(binary: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], Contour]:
    """Filled largest external component of a 0/1 image and its contour; raises if none."""
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise AcquisitionError("no hand found (no bright region)")
    largest = max(contours, key=cv2.contourArea)
    mask = np.zeros_like(binary)
    cv2.drawContours(mask, [largest], -1, 1, thickness=cv2.FILLED)
    return mask, largest.astype(np.int32)


def border_fraction(binary: NDArray[np.uint8]) -> float:
    """Fraction of the outermost pixels (all four image edges) of a 0/1 ``(H, W)`` image
    that are 1."""
    if min(binary.shape) < 3:
        return float(binary.mean())
    edges = (binary[0], binary[-1], binary[1:-1, 0], binary[1:-1, -1])
    return float(sum(int(edge.sum()) for edge in edges)) / float(sum(e.size for e in edges))


def _otsu(work: GrayImage) -> tuple[float, NDArray[np.uint8], GrayImage]:
    """Otsu level, 0/1 bright-class image and the Gaussian-blurred copy that was split,
    with a dark hand on a light background turned into a bright one on a dark background.

    The background holds most of the image border (only the wrist, a sleeve or a cut
    finger also reach it): when more than ``ROI_LIGHT_BACKGROUND_BORDER`` of the border
    lies in Otsu's bright class, the background is the bright class and the negative of
    the blurred copy is split instead. The hand's geometry is all that is taken from the
    segmentation; its grey levels are read from the image itself.
    """
    blurred: GrayImage = cv2.GaussianBlur(work, (0, 0), P.ROI_SEGMENT_BLUR_SIGMA).astype(np.uint8)
    level, split = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary: NDArray[np.uint8] = np.asarray(split, dtype=np.uint8)
    if border_fraction(binary) > P.ROI_LIGHT_BACKGROUND_BORDER:
        blurred = (255 - blurred).astype(np.uint8)
        level, split = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        binary = np.asarray(split, dtype=np.uint8)
    return float(level), binary, blurred


def _hand_mask(
    work: GrayImage, debug: DebugHook | None
) -> tuple[NDArray[np.uint8], Contour, float, GrayImage]:
    """Largest bright Otsu component of ``work`` (of its negative when the background is
    light, see :func:`_otsu`), filled; its Otsu level and the blurred copy that was split.

    Raises "no hand found" without a bright region, background, or enough area.
    """
    level, binary, blurred = _otsu(work)
    emit(debug, "blurred", blurred)
    mask, largest = _largest_region(binary)
    emit(debug, "mask", mask * 255)
    if mask.all():
        raise AcquisitionError("no hand found (no dark background around a hand)")
    if float(mask.mean()) < P.ROI_MIN_HAND_AREA_FRACTION:
        raise AcquisitionError(
            f"no hand found (largest bright region {float(mask.mean()):.1%} of the image, "
            f"needs {P.ROI_MIN_HAND_AREA_FRACTION:.0%})"
        )
    return mask, largest, level, blurred


def _inscribed_circle(mask: NDArray[np.uint8]) -> tuple[float, float, float, NDArray[np.float32]]:
    """Maximum inscribed circle (x, y, radius px) of ``mask`` and its distance transform.

    OpenCV's distance transform treats the space outside the image as foreground, so a
    palm cut by the image border keeps its true radius. Ties along a ridge (a palm
    spanning the whole frame) resolve to the middle of the near-maximal ridge
    (``ROI_CENTRE_TIE_FRACTION``).
    """
    distance: NDArray[np.float32] = cv2.distanceTransform(mask, cv2.DIST_L2, 5).astype(np.float32)
    _, radius, _, (x, y) = cv2.minMaxLoc(distance)
    ridge = (distance >= P.ROI_CENTRE_TIE_FRACTION * radius).astype(np.uint8)
    _, labels = cv2.connectedComponents(ridge)
    ys, xs = np.nonzero(labels == labels[y, x])
    return float(xs.mean()), float(ys.mean()), float(radius), distance


def in_frame_circle(hand: Hand) -> Hand:
    """``hand`` with the centre and radius of the largest inscribed circle that also stays
    inside the image (the border counts as background; ties as in :func:`_inscribed_circle`).

    For a whole hand (all fingers in view, the ROI on the inscribed circle): where the
    wrist or forearm leaves the frame, the circle of :func:`_inscribed_circle` may reach
    beyond the border into hand that is not seen, and slides towards the wrist by as much
    as the frame cuts it, which differs from capture to capture. Chosen on the tuning
    halves (benchmarks/roi_halves.py split): contactless-phone-hand EER 2.86 -> 0 %
    (d' 4.4 -> 6.4), coep-hand and nir-contactless-hand unchanged; then measured once on
    the held-out half of the phone set: 10.9 -> 0 %. The price: a palm cut through its
    middle by the frame gets a smaller circle, higher up (a drawn elliptical palm cut
    20 % of its height short: ROI side -6 %, centre 14 px higher), where the open-border
    circle kept its size.
    """
    padded = np.pad(hand.mask, 1)
    x, y, radius, _ = _inscribed_circle(padded)
    return Hand(mask=hand.mask, contour=hand.contour, centre=(x - 1.0, y - 1.0), radius=radius,
                outline=hand.outline)


def _palm_circle(mask: NDArray[np.uint8], debug: DebugHook | None) -> tuple[float, float, float]:
    """Maximum inscribed circle (x, y, radius px) of the hand; "no hand found" if too small."""
    x, y, radius, distance = _inscribed_circle(mask)
    emit(debug, "distance", distance)
    if radius < P.ROI_MIN_PALM_RADIUS_FRACTION * min(mask.shape):
        raise AcquisitionError(
            f"no hand found (palm radius {radius:.0f} px < "
            f"{P.ROI_MIN_PALM_RADIUS_FRACTION:.0%} of the image side)"
        )
    return x, y, radius


def segment_hand(work: GrayImage, debug: DebugHook | None = None) -> Hand:
    """Segment the hand in a working-resolution grey image.

    Args:
        work: ``(H, W)`` ``uint8`` grey image, a bright hand on a darker background, or
            a darker hand on a light background (then "blurred" shows the negative).
        debug: optional step hook ("blurred", "mask", "distance").

    Returns:
        The :class:`Hand` (mask, contour, palm centre and radius in ``work`` pixels).

    Raises:
        AcquisitionError: "no hand found" (no bright region, no background, or a
            region or palm too small).
    """
    mask, contour, level, blurred = _hand_mask(work, debug)
    x, y, radius = _palm_circle(mask, debug)
    return Hand(
        mask=mask,
        contour=contour,
        centre=(x, y),
        radius=radius,
        outline=outline_hand(blurred, level, (x, y), radius),
    )


def outline_hand(
    blurred: GrayImage, level: float, centre: tuple[float, float], radius: float
) -> Hand | None:
    """The hand at a lower grey level, where dim finger roots still count as hand.

    Fingers near the frame edge of a contact scanner, and finger roots in the falling
    light of a contactless one, are darker than the palm and Otsu's level cuts them
    ragged; the gaps between fingers are background, darker still. The outline level
    lies ``ROI_OUTLINE_LEVEL`` of the way from the mean of the pixels below Otsu's
    level (the background class) up to Otsu's level. ``None`` when no region
    results. The palm centre and radius are those of the Otsu mask (``centre``,
    ``radius``): a lower level can let the hand fill the frame, where the inscribed
    circle of the outline drifts to the image border.
    """
    below = blurred[blurred < level]
    if below.size == 0:
        return None
    background = float(below.mean())
    threshold = background + P.ROI_OUTLINE_LEVEL * (level - background)
    binary = (blurred > threshold).astype(np.uint8)
    size = max(3, round(P.ROI_OUTLINE_OPENING * min(binary.shape)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(binary, cv2.MORPH_OPEN, disc).astype(np.uint8)
    try:
        mask, contour = _largest_region(opened)
    except AcquisitionError:
        return None
    if mask.all():
        return None
    return Hand(mask=mask, contour=contour, centre=centre, radius=radius)
