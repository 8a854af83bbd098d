"""Quality gate of the palm ROI step: exposure, saturation, sharpness, contrast.

Each check raises :class:`identity.errors.AcquisitionError` (failure to acquire, FTA)
whose ``reason`` starts with the failed check ("too dark", "saturated", "blurred").
Sharpness is the variance of the Laplacian (Pech-Pacheco et al., "Diatom autofocusing
in brightfield microscopy: a comparative study", ICPR 2000).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from identity import params as P
from identity.errors import AcquisitionError

GrayImage = NDArray[np.uint8]

DebugHook = Callable[[str, NDArray[np.uint8]], None]
"""Called with (step name, ``uint8`` image of that step) when given to ``extract_roi``."""


def emit(debug: DebugHook | None, name: str, image: NDArray[np.generic]) -> None:
    """Hand one step's image to ``debug`` (bool -> 0/255, other dtypes min-max scaled)."""
    if debug is None:
        return
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        values = image.astype(np.float64)
        span = max(float(values.max() - values.min()), 1e-9)
        image = ((values - values.min()) * (255.0 / span)).astype(np.uint8)
    debug(name, np.ascontiguousarray(image))


def check_exposure(pixels: NDArray[np.uint8], where: str) -> None:
    """Raise when ``pixels`` (any shape, ``uint8``) are too dark or too often saturated.

    Raises:
        AcquisitionError: mean grey level below ``ROI_MIN_MEAN_LEVEL`` ("too dark"), or
            more than ``ROI_MAX_SATURATED_FRACTION`` at >= ``ROI_SATURATION_LEVEL``.
    """
    mean = float(pixels.mean()) if pixels.size else 0.0
    if mean < P.ROI_MIN_MEAN_LEVEL:
        raise AcquisitionError(f"too dark ({where} mean level {mean:.0f} < {P.ROI_MIN_MEAN_LEVEL})")
    check_saturation(pixels, where)


def check_saturation(pixels: NDArray[np.uint8], where: str) -> None:
    """Raise AcquisitionError ("saturated") when too many ``pixels`` are at the top level."""
    saturated = float(np.mean(pixels >= P.ROI_SATURATION_LEVEL)) if pixels.size else 0.0
    if saturated > P.ROI_MAX_SATURATED_FRACTION:
        raise AcquisitionError(
            f"saturated ({saturated:.0%} of the {where} at >= {P.ROI_SATURATION_LEVEL}, "
            f"limit {P.ROI_MAX_SATURATED_FRACTION:.0%})"
        )


def normalise_contrast(roi: GrayImage) -> GrayImage:
    """Stretch a low-contrast ROI so its 1st..99th percentiles span ``ROI_NORMALISED_RANGE``."""
    low, high = (float(v) for v in np.percentile(roi, (1, 99)))
    if high - low >= P.ROI_MIN_DYNAMIC_RANGE or high - low < 1.0:
        return roi
    gain = P.ROI_NORMALISED_RANGE / (high - low)
    stretched = (roi.astype(np.float32) - (low + high) / 2.0) * gain + 128.0
    result: GrayImage = np.clip(stretched, 0, 255).astype(np.uint8)
    return result


def finish_roi(roi: GrayImage, debug: DebugHook | None) -> tuple[GrayImage, float, float]:
    """Quality-gate a cropped ROI and normalise its contrast.

    Args:
        roi: ``(ROI_SIZE, ROI_SIZE)`` ``uint8`` grey ROI.
        debug: optional step hook; receives "roi".

    Returns:
        (normalised ROI, sharpness = variance of its Laplacian in grey levels^2,
        brightness = mean grey level before normalisation).

    Raises:
        AcquisitionError: "too dark", "saturated" or "blurred" (sharpness below
            ``ROI_MIN_SHARPNESS``).
    """
    check_exposure(roi, "ROI")
    brightness = float(roi.mean())
    roi = normalise_contrast(roi)
    sharpness = float(cv2.Laplacian(roi, cv2.CV_64F).var())
    if sharpness < P.ROI_MIN_SHARPNESS:
        raise AcquisitionError(
            f"blurred (variance of Laplacian {sharpness:.1f} < {P.ROI_MIN_SHARPNESS})"
        )
    emit(debug, "roi", roi)
    return roi, sharpness, brightness
