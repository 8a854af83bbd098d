"""Hand segmentation and palm centre for ROI extraction from whole-hand images.

The hand is the largest bright region after Otsu thresholding of a Gaussian-blurred
copy (Otsu, "A threshold selection method from gray-level histograms", IEEE SMC 1979),
holes filled; the palm centre and size are the maximum inscribed circle of the hand
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
    """

    mask: NDArray[np.uint8]
    contour: Contour
    centre: tuple[float, float]
    radius: float


def _hand_mask(work: GrayImage, debug: DebugHook | None) -> tuple[NDArray[np.uint8], Contour]:
    """Largest bright Otsu component of ``work``, filled; raises "no hand found"."""
    blurred = cv2.GaussianBlur(work, (0, 0), P.ROI_SEGMENT_BLUR_SIGMA)
    emit(debug, "blurred", blurred)
    _, binary = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    mask = np.zeros_like(work)
    if not contours:
        raise AcquisitionError("no hand found (no bright region)")
    largest = max(contours, key=cv2.contourArea)
    cv2.drawContours(mask, [largest], -1, 1, thickness=cv2.FILLED)
    emit(debug, "mask", mask * 255)
    if mask.all():
        raise AcquisitionError("no hand found (no dark background around a hand)")
    if float(mask.mean()) < P.ROI_MIN_HAND_AREA_FRACTION:
        raise AcquisitionError(
            f"no hand found (largest bright region {float(mask.mean()):.1%} of the image, "
            f"needs {P.ROI_MIN_HAND_AREA_FRACTION:.0%})"
        )
    return mask, largest.astype(np.int32)


def _palm_circle(mask: NDArray[np.uint8], debug: DebugHook | None) -> tuple[float, float, float]:
    """Maximum inscribed circle (x, y, radius px) of the hand mask.

    OpenCV's distance transform treats the space outside the image as foreground, so a
    palm cut by the image border keeps its true radius. Ties along a ridge (a palm
    spanning the whole frame) resolve to the middle of the near-maximal ridge.
    """
    distance = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    emit(debug, "distance", distance)
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


def segment_hand(work: GrayImage, debug: DebugHook | None = None) -> Hand:
    """Segment the hand in a working-resolution grey image.

    Args:
        work: ``(H, W)`` ``uint8`` grey image, a bright hand on a darker background.
        debug: optional step hook ("blurred", "mask", "distance").

    Returns:
        The :class:`Hand` (mask, contour, palm centre and radius in ``work`` pixels).

    Raises:
        AcquisitionError: "no hand found" (no bright region, no background, or a
            region or palm too small).
    """
    mask, contour = _hand_mask(work, debug)
    x, y, radius = _palm_circle(mask, debug)
    return Hand(mask=mask, contour=contour, centre=(x, y), radius=radius)
