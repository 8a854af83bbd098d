"""OrdinalCode of a palm ROI: the second code of a template, fused with CompCode at score level.

Algorithm: Z. Sun, T. Tan, Y. Wang and S. Z. Li, "Ordinal palmprint representation for
personal identification", CVPR 2005. An orthogonal line ordinal filter
``OF(theta) = f(theta) - f(theta + pi/2)`` with ``f(x, y, theta) = exp(-(x cos theta +
y sin theta)^2 / dx^2 - (-x sin theta + y cos theta)^2 / dy^2)``, an elongated 2-D
Gaussian (``dx > dy``, long axis along ``theta``), is applied for ``theta`` in
``{0, pi/6, pi/3}``; one bit per orientation is the sign of the filtered image. Here the
signed responses are averaged over the cells of CompCode's grid before the sign is taken,
so every cell holds 3 bits in the bit layout of :class:`identity.template.Template`
(variant ``r`` = a ``(3, H, W)`` bool array, orientation, row, column), and the ordinal
code shares CompCode's rotation variants (the work image is rotated before filtering, as
in :mod:`identity.features`), validity mask and alignment search (:mod:`identity.matcher`).

Setting: the candidate ``benchmarks/ordinal_fusion.py`` chose on Tongji palm000-palm149
(``params.ORDINAL_*``): 128 px work image, ``dx`` 3 and ``dy`` 1 ROI px, kernel half-side
``ceil(2.5 dx)`` work px. The filtering runs through the DFT (:mod:`identity.filtering`)
where the study used ``cv2.filter2D``; the bits equal the study's ``ordinal_code`` except
where a cell's mean response is within float32 rounding of zero (1 of 5.5 million bits
differed on 150 Tongji ROIs, all 12 variants).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from identity import cells, params
from identity.errors import InvalidImageError
from identity.filtering import SpectralBank
from identity.template import BITS_PER_CELL

# Filter orientations theta_j (radians), Sun et al. 2005; one code bit each.
ORIENTATIONS_RAD = (0.0, math.pi / 6.0, math.pi / 3.0)


@dataclass(frozen=True)
class OrdinalParams:
    """Parameters of the OrdinalCode extractor; defaults come from :mod:`identity.params`.

    ``work_size``: side (px) the ROI is resized to before filtering; ``sigma_long`` and
    ``sigma_short``: Gaussian lobe sigmas ``dx``, ``dy`` along and across the filter
    orientation, in ROI pixels; ``size_factor``: kernel half-side = ``ceil(size_factor *
    dx)`` work pixels. Raises ValueError on a non-positive value or ``dx < dy``.
    """

    work_size: int = params.ORDINAL_WORK_SIZE
    sigma_long: float = params.ORDINAL_SIGMA_LONG_PX
    sigma_short: float = params.ORDINAL_SIGMA_SHORT_PX
    size_factor: float = params.ORDINAL_KERNEL_FACTOR

    def __post_init__(self) -> None:
        if self.work_size <= 0 or self.sigma_short <= 0.0 or self.size_factor <= 0.0:
            raise ValueError(f"ordinal parameters must be positive: {self}")
        if self.sigma_long < self.sigma_short:
            raise ValueError(f"sigma_long must be >= sigma_short: {self}")


DEFAULT_ORDINAL_PARAMS = OrdinalParams()


def ordinal_bank(
    p: OrdinalParams = DEFAULT_ORDINAL_PARAMS, roi_size: int = params.ROI_SIZE
) -> list[npt.NDArray[np.float32]]:
    """The 3 orthogonal line ordinal filters ``OF(theta)`` of Sun et al. (CVPR 2005).

    Returns float32 square kernels of side ``2 * ceil(size_factor * dx) + 1`` work pixels,
    where ``dx = sigma_long * work_size / roi_size`` (``roi_size`` in px), one per angle
    of :data:`ORIENTATIONS_RAD`; each has zero mean (both lobes have the same mass, the
    mean is removed against sampling error). The returned arrays are fresh copies.
    Raises ValueError for ``roi_size <= 0``.
    """
    if roi_size <= 0:
        raise ValueError(f"roi_size must be positive, got {roi_size}")
    return [k.copy() for k in _bank(p, roi_size)]


@functools.lru_cache(maxsize=16)
def _bank(p: OrdinalParams, roi_size: int) -> tuple[npt.NDArray[np.float32], ...]:
    """The cached kernels of :func:`ordinal_bank` (read-only arrays)."""
    scale = p.work_size / roi_size
    dx, dy = p.sigma_long * scale, p.sigma_short * scale
    half = math.ceil(p.size_factor * dx)
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)

    def lobe(theta: float) -> npt.NDArray[np.float64]:
        along = x * math.cos(theta) + y * math.sin(theta)
        across = -x * math.sin(theta) + y * math.cos(theta)
        return np.asarray(np.exp(-((along / dx) ** 2) - (across / dy) ** 2), np.float64)

    kernels = []
    for theta in ORIENTATIONS_RAD:
        k = lobe(theta) - lobe(theta + math.pi / 2.0)
        kernel = (k - k.mean()).astype(np.float32)
        kernel.setflags(write=False)
        kernels.append(kernel)
    return tuple(kernels)


@functools.lru_cache(maxsize=16)
def _spectral_bank(p: OrdinalParams, roi_size: int) -> SpectralBank:
    """The kernels of :func:`_bank` prepared for the work image (:mod:`identity.filtering`)."""
    return SpectralBank(_bank(p, roi_size), p.work_size)


def extract_ordinal(
    roi: npt.NDArray[np.uint8],
    p: OrdinalParams = DEFAULT_ORDINAL_PARAMS,
    rotations_deg: tuple[float, ...] = params.FEATURE_ROTATIONS_DEG,
    grid: int = params.FEATURE_GRID_SIZE,
    refine_offsets_cells: tuple[tuple[float, float], ...] = (),
    refine_warps: tuple[cells.Warp, ...] = (),
) -> npt.NDArray[np.bool_]:
    """OrdinalCode bits of a square grey ROI: bool ``(R * (1 + O), 3, grid, grid)``, R =
    rotations, O = refinement offsets + warps, in the variant order of
    :func:`identity.features.extract_features` (the R rotations, then each rotation's
    grids moved by ``refine_offsets_cells`` and warped by ``refine_warps``,
    :func:`identity.cells.pool_warped`).

    ``roi``: uint8 ``(S, S)`` with ``S >= grid``. Bit ``(r, j, y, x)`` is True when the
    mean of ``OF(theta_j)`` over cell ``(y, x)`` of the work image rotated by
    ``rotations_deg[r]`` degrees (counter-clockwise, about its centre, reflected border:
    :func:`identity.features.extract_features`' rotation) is positive, i.e. the line along
    ``theta_j`` is brighter than the one across it. Validity is CompCode's mask of the same
    variant (not computed here). Raises :class:`InvalidImageError` if ``roi`` is not a
    2-D uint8 square image of at least ``grid`` px, ValueError if an offset is not a whole
    number of work pixels.
    """
    if roi.ndim != 2 or roi.dtype != np.uint8 or roi.shape[0] != roi.shape[1]:
        raise InvalidImageError(f"ROI must be a square 2-D uint8 image, got {roi.shape}")
    if roi.shape[0] < grid:
        raise InvalidImageError(f"ROI side {roi.shape[0]} is below the grid {grid}")
    work = cv2.resize(roi, (p.work_size, p.work_size), interpolation=cv2.INTER_AREA)
    img = work.astype(np.float32)
    bank = _spectral_bank(p, int(roi.shape[0]))
    moved = cells.offsets_px(refine_offsets_cells, p.work_size, grid)
    n_rot, n_ref = len(rotations_deg), len(moved) + len(refine_warps)
    out = np.empty((n_rot * (1 + n_ref), BITS_PER_CELL, grid, grid), dtype=bool)
    for r, angle in enumerate(rotations_deg):
        rotated = _rotate(img, angle)
        resp = bank.correlate(rotated)  # (3, S, S)
        for j in range(len(resp)):
            out[r, j] = cells.pool(resp[j], grid) > 0.0
        refined = [*cells.pool_offsets(resp, grid, moved),
                   *cells.pool_warped(resp, grid, refine_warps)]
        for o, pooled in enumerate(refined):
            out[n_rot + r * n_ref + o] = pooled > 0.0
    return out


def _rotate(img: npt.NDArray[np.float32], angle_deg: float) -> npt.NDArray[np.float32]:
    """``img`` rotated by ``angle_deg`` degrees about its centre, as the CompCode coder does."""
    if angle_deg == 0.0:
        return img
    h, w = img.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    return np.asarray(
        cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
        np.float32,
    )
