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

import math
from collections.abc import Callable
from functools import lru_cache

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


class LevelCounts:
    """Histogram of ``uint8`` pixels (any shape, possibly empty), from which the exposure,
    saturation and percentile checks read exactly the values that a pass over the pixels
    gives (``pixels.mean()``, ``np.mean(pixels >= level)``, ``np.percentile(pixels, q)``):
    one histogram instead of one pass (or one partial sort) per check. ``cv2.calcHist``
    counts in integers and returns them as ``float32``, exact up to 2**24 pixels (a
    4096 x 4096 image); larger inputs are counted by ``np.bincount``.
    """

    __slots__ = ("counts", "cumulative", "size")

    def __init__(self, pixels: NDArray[np.uint8]) -> None:
        flat = pixels.reshape(-1)
        if 0 < flat.size <= 1 << 24:
            hist = cv2.calcHist([flat], [0], None, [256], [0, 256])
            self.counts = hist.reshape(-1).astype(np.int64)
        else:
            self.counts = np.bincount(flat, minlength=256).astype(np.int64)
        self.cumulative = np.cumsum(self.counts)
        self.size = int(flat.size)

    def mean(self) -> float:
        """``float(pixels.mean())`` (0.0 when empty): numpy sums ``uint8`` in ``float64``,
        exactly (integers below 2**53), and divides once, as this does."""
        if not self.size:
            return 0.0
        return int(self.counts @ np.arange(256)) / self.size

    def fraction_at_least(self, level: int) -> float:
        """``float(np.mean(pixels >= level))`` (0.0 when empty), for ``level`` in 0..256."""
        if not self.size:
            return 0.0
        below = int(self.cumulative[level - 1]) if level > 0 else 0
        return (self.size - below) / self.size

    def percentile(self, q: int | float | tuple[int | float, ...]) -> tuple[float, ...]:
        """``np.percentile(pixels, q)`` (linear method) as floats, one per ``q``.

        Raises ValueError when there are no pixels. Exact by construction: numpy's
        result for each ``q`` depends only on the number of pixels, ``q`` and the order
        statistics at the two ranks next to ``q / 100 x (size - 1)``; those (and one rank
        either side, which covers any rounding of that index: :meth:`_window`) are read
        from the histogram, and ``np.percentile(..., q)`` itself is run on a sorted
        stand-in array with the same size and the same values at those ranks
        (:func:`_percentile_of`, cached: the values there are mostly all equal).
        """
        quantiles = q if isinstance(q, tuple) else (q,)
        return tuple(_percentile_of(self.size, q, k, *self._window(v))
                     for k, v in enumerate(quantiles))

    def percentile_bounds(self, q: int | float) -> tuple[int, int]:
        """``(low, high)`` with ``low <= np.percentile(pixels, q) <= high``: the order
        statistics one rank below and two above ``q / 100 x (size - 1)`` (numpy's
        result lies between those at the two ranks next to its index). Raises
        ValueError when there are no pixels."""
        _, values = self._window(q)
        return values[0], values[-1]

    def _window(self, q: int | float) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Ranks ``floor(q / 100 x (size - 1)) - 1 .. + 2`` (clipped to the pixels) and
        the pixel values there in sorted order."""
        if not self.size:
            raise ValueError("percentile of no pixels")
        last = self.size - 1
        centre = math.floor(q / 100.0 * last)
        ranks = tuple(sorted({min(last, max(0, centre + d)) for d in (-1, 0, 1, 2)}))
        values = np.searchsorted(self.cumulative, ranks, side="right")
        return ranks, tuple(int(v) for v in values)


@lru_cache(maxsize=4096)
def _percentile_of(size: int, q: int | float | tuple[int | float, ...], k: int,
                   ranks: tuple[int, ...], values: tuple[int, ...]) -> float:
    """Item ``k`` of ``np.percentile(stand_in, q)`` (item 0 for a scalar ``q``), for the
    sorted ``uint8`` stand-in of ``size`` values that holds ``values[i]`` from rank
    ``ranks[i]`` up to the next rank (``values[0]`` below ``ranks[0]`` too): the real
    pixels' order statistics at ``ranks``, around the ``k``-th quantile."""
    runs = np.diff((0, *ranks[1:], size))
    stand_in = np.repeat(np.array(values, dtype=np.uint8), runs)
    return float(np.atleast_1d(np.percentile(stand_in, q))[k])


def check_exposure(pixels: NDArray[np.uint8] | LevelCounts, where: str) -> None:
    """Raise when ``pixels`` (any shape, ``uint8``, or their :class:`LevelCounts`) are
    too dark or too often saturated.

    Raises:
        AcquisitionError: mean grey level below ``ROI_MIN_MEAN_LEVEL`` ("too dark"), or
            more than ``ROI_MAX_SATURATED_FRACTION`` at >= ``ROI_SATURATION_LEVEL``.
    """
    levels = pixels if isinstance(pixels, LevelCounts) else LevelCounts(pixels)
    mean = levels.mean()
    if mean < P.ROI_MIN_MEAN_LEVEL:
        raise AcquisitionError(f"too dark ({where} mean level {mean:.0f} < {P.ROI_MIN_MEAN_LEVEL})")
    check_saturation(levels, where)


def check_saturation(pixels: NDArray[np.uint8] | LevelCounts, where: str) -> None:
    """Raise AcquisitionError ("saturated") when too many ``pixels`` (``uint8``, or their
    :class:`LevelCounts`) are at the top level."""
    levels = pixels if isinstance(pixels, LevelCounts) else LevelCounts(pixels)
    saturated = levels.fraction_at_least(P.ROI_SATURATION_LEVEL)
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


def ensure_palm_texture(image: NDArray[np.float32]) -> None:
    """:func:`check_palm_texture` without its return value: raises exactly when, and
    with the message with which, it raises; faster on a clear pass.

    The coherence is first estimated by :func:`_coherence_estimate`, which differs from
    :func:`orientation_coherence` by rounding only (under 1e-6 on palm ROIs and noise);
    only an estimate below ``ROI_MIN_ORIENTATION_COHERENCE`` x (1 +
    ``_COHERENCE_MARGIN``) is measured again exactly.
    """
    if _coherence_estimate(image) < P.ROI_MIN_ORIENTATION_COHERENCE * (1.0 + _COHERENCE_MARGIN):
        check_palm_texture(image)


_COHERENCE_MARGIN = 0.01
"""Relative margin above the coherence threshold within which :func:`ensure_palm_texture`
measures the coherence exactly instead of trusting :func:`_coherence_estimate`."""


def _coherence_estimate(image: NDArray[np.float32]) -> float:
    """:func:`orientation_coherence` with two Gaussian blurs instead of three (0.0 for
    no energy): the blur is linear, so ``jxx - jyy`` is the blur of ``gx^2 - gy^2``, and
    the energy ``sum(jxx + jyy)`` is ``gx^2 + gy^2`` weighted by how much of each
    row and column the blur spreads over the frame (:func:`_blur_weights`). Equal to
    it but for the rounding of ``float32`` sums."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    sigma = P.ROI_COHERENCE_SIGMA
    xx, yy = gx * gx, gy * gy
    difference = cv2.GaussianBlur(xx - yy, (0, 0), sigma)
    cross = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    rows, cols = image.shape
    energy = float(_blur_weights(rows, sigma) @ (xx + yy).astype(np.float64)
                   @ _blur_weights(cols, sigma))
    if energy <= 0.0:
        return 0.0
    anisotropy = np.sqrt(difference * difference + 4.0 * cross * cross)
    return min(1.0, float(anisotropy.sum(dtype=np.float64)) / energy)


@lru_cache(maxsize=16)
def _blur_weights(length: int, sigma: float) -> NDArray[np.float64]:
    """``(length,)`` total weight each input row (column) of ``cv2.GaussianBlur(..., (0,
    0), sigma)`` of a ``float32`` image gets over all output rows: the column sums of
    its 1-D filter matrix (OpenCV's kernel side for float images, ``round(8 sigma + 1)``
    made odd, and its default border, ``BORDER_REFLECT_101``)."""
    kernel = cv2.getGaussianKernel(round(8.0 * sigma + 1.0) | 1, sigma, cv2.CV_64F)
    matrix = cv2.sepFilter2D(np.eye(length), cv2.CV_64F, np.ones((1, 1)), kernel,
                             borderType=cv2.BORDER_REFLECT_101)
    weights: NDArray[np.float64] = matrix.sum(axis=0)
    weights.setflags(write=False)
    return weights


def normalise_contrast(roi: GrayImage, levels: LevelCounts | None = None) -> GrayImage:
    """Stretch a low-contrast ROI so its 1st..99th percentiles span ``ROI_NORMALISED_RANGE``
    (``levels``: the ROI's :class:`LevelCounts` when already made)."""
    levels = levels if levels is not None else LevelCounts(roi)
    # The percentiles' bounds decide most ROIs; exact percentiles only when they do not.
    (low_min, low_max), (high_min, high_max) = (levels.percentile_bounds(1),
                                                levels.percentile_bounds(99))
    if high_min - low_max >= P.ROI_MIN_DYNAMIC_RANGE or high_max - low_min < 1.0:
        return roi
    low, high = levels.percentile((1, 99))
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
    levels = LevelCounts(roi)
    check_exposure(levels, "ROI")
    brightness = levels.mean()
    roi = normalise_contrast(roi, levels)
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
