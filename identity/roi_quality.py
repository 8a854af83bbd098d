"""Quality gate of the palm ROI step: exposure, saturation, sharpness, contrast.

Each check raises :class:`identity.errors.AcquisitionError` (failure to acquire, FTA)
whose ``reason`` starts with the failed check ("too dark", "saturated", "blurred",
"no palm texture").
Sharpness is the variance of the Laplacian (Pech-Pacheco et al., "Diatom autofocusing
in brightfield microscopy: a comparative study", ICPR 2000). Palm texture is the
orientation coherence of the structure tensor (Bigun & Granlund, "Optimal orientation
detection of linear symmetry", ICCV 1987; Kass & Witkin, "Analyzing oriented
patterns", CVGIP 37, 1987): palm lines and creases are oriented, white noise is not.
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


def orientation_coherence(image: NDArray[np.float32]) -> float:
    """Energy-weighted orientation coherence of the structure tensor of ``image``.

    The tensor ``J = G_s * (grad I grad I^T)`` (Sobel gradients, Gaussian window of
    sigma ``s = ROI_COHERENCE_SIGMA`` px, reflected borders) has eigenvalues l1 >= l2;
    the result is ``sum(l1 - l2) / sum(l1 + l2)`` over all pixels (Bigun & Granlund
    1987; Kass & Witkin 1987): 1 for parallel straight lines, about 0.13 for white
    noise at this window, 0 for a flat image. Independent of gain and offset.

    Args:
        image: ``(H, W)`` ``float32`` grey image, H, W >= 3 (the ``ROI_ANALYSIS_SIDE``
            copy of a pass-through ROI).

    Returns:
        Coherence in [0, 1].
    """
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    sigma = P.ROI_COHERENCE_SIGMA
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    energy = float((jxx + jyy).sum())
    if energy <= 0.0:
        return 0.0
    return min(1.0, float(np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy**2).sum()) / energy)


def check_palm_texture(image: NDArray[np.float32]) -> float:
    """Raise unless ``image`` has oriented (line) texture; returns its coherence.

    Args:
        image: ``(H, W)`` ``float32`` grey image (see :func:`orientation_coherence`).

    Raises:
        AcquisitionError: "no palm texture" when the orientation coherence is below
            ``ROI_MIN_ORIENTATION_COHERENCE`` (isotropic texture such as noise).
    """
    coherence = orientation_coherence(image)
    if coherence < P.ROI_MIN_ORIENTATION_COHERENCE:
        raise AcquisitionError(
            f"no palm texture (orientation coherence {coherence:.2f} < "
            f"{P.ROI_MIN_ORIENTATION_COHERENCE}: no oriented lines, e.g. noise)"
        )
    return coherence


def normalise_contrast(roi: GrayImage) -> GrayImage:
    """Stretch a low-contrast ROI so its 1st..99th percentiles span ``ROI_NORMALISED_RANGE``."""
    low, high = (float(v) for v in np.percentile(roi, (1, 99)))
    if high - low >= P.ROI_MIN_DYNAMIC_RANGE or high - low < 1.0:
        return roi
    gain = P.ROI_NORMALISED_RANGE / (high - low)
    stretched = (roi.astype(np.float32) - (low + high) / 2.0) * gain + 128.0
    result: GrayImage = np.clip(stretched, 0, 255).astype(np.uint8)
    return result


def finish_roi(roi: GrayImage, debug: DebugHook | None,
               native_side: int | None = None) -> tuple[GrayImage, float, float]:
    """Quality-gate a cropped ROI and normalise its contrast.

    Args:
        roi: ``(ROI_SIZE, ROI_SIZE)`` ``uint8`` grey ROI.
        debug: optional step hook; receives "roi".
        native_side: side (px) the ROI had in the captured image, when it was enlarged
            to ``ROI_SIZE``; the sharpness is then measured at that side, since
            interpolation lowers the variance of the Laplacian of a sharp but small
            capture (about 16-fold for a 2x enlargement) and would call it blurred.

    Returns:
        (normalised ROI, sharpness = variance of its Laplacian in grey levels^2, at the
        capture's resolution, brightness = mean grey level before normalisation).

    Raises:
        AcquisitionError: "too dark", "saturated" or "blurred" (sharpness below
            ``ROI_MIN_SHARPNESS``).
    """
    check_exposure(roi, "ROI")
    brightness = float(roi.mean())
    roi = normalise_contrast(roi)
    sharpness = _sharpness(roi, native_side)
    if sharpness < P.ROI_MIN_SHARPNESS:
        raise AcquisitionError(
            f"blurred (variance of Laplacian {sharpness:.1f} < {P.ROI_MIN_SHARPNESS})"
        )
    emit(debug, "roi", roi)
    return roi, sharpness, brightness


def _sharpness(roi: GrayImage, native_side: int | None) -> float:
    """Variance of the Laplacian of ``roi``, shrunk back (area averaging) to
    ``native_side`` px when it was enlarged from a smaller capture."""
    measured = roi
    if native_side is not None and native_side < roi.shape[0]:
        side = max(native_side, 3)
        measured = np.asarray(cv2.resize(roi, (side, side), interpolation=cv2.INTER_AREA))
    return float(cv2.Laplacian(measured, cv2.CV_64F).var())
