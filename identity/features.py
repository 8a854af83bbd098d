"""Competitive Gabor orientation coding (CompCode) of a palm ROI.

Algorithm: A. W.-K. Kong and D. Zhang, "Competitive coding scheme for palmprint
verification", ICPR 2004. Six real (even-symmetric, zero-DC) Gabor filters at
orientations ``j * pi / 6`` are applied to the ROI; palm lines are dark, so at each
cell the orientation whose response is the *minimum* wins. The winning index
``j`` in ``0..5`` is coded in 3 bits (000, 001, 011, 111, 110, 100) so that the
Hamming distance between two codes equals their angular distance in steps of
``pi / 6`` (at most 3).

Rotation variants: the code is also computed for the ROI rotated by each angle of
``params.FEATURE_ROTATIONS_DEG`` (variant 0 is unrotated); the matcher takes the best
of the probe's variants against the reference's variant 0. Cells that a rotation
brings in from outside the ROI are invalid. Measured on Tongji palm000-palm149 (see
``identity/params.py``), this rotation search cut the EER of the same coder from
0.61 % to 0.16 %.

Refinement variants (since 2026-12-01): each rotation's responses are also pooled on the
cell grid moved by ``params.FEATURE_REFINE_OFFSETS_CELLS`` (half a cell down, right and
both; :mod:`identity.cells`), the code of the ROI moved by half a cell without filtering it
again. The fused matcher refines its best whole-cell alignment with them; measured on
Tongji palm000-palm149 this took the fused coder's EER from 0.100 % to 0.080 % (see
``identity/params.py``).

Sheared variants (since 2026-12-01, late evening): each rotation's responses are also
pooled on the cell grid sheared about the ROI centre by ``params.FEATURE_REFINE_SHEARS``
(rows slid sideways in proportion to their height: a palm tilted towards or away from a
contactless sensor looks skewed), read from the box-filtered responses at the moved cell
centres (:func:`identity.cells.pool_warped`), and the matcher refines with them like the
half-cell variants. Measured on Tongji palm000-palm149 this took the fused coder's EER from
0.087 % to 0.052 % (see ``identity/params.py``).

Scaled variants (since 2026-12-01, night), for ROIs this pipeline located in a whole hand only
(:data:`LOCATED_FEATURE_PARAMS`, chosen by :func:`feature_params`): the grid is also scaled
about the ROI centre by ``params.FEATURE_REFINE_SCALES_LOCATED`` (0.93, 1.07), since such an
ROI's scale is the pipeline's own estimate. Measured on the tuning halves of the whole-hand
sets it took PolyU's FNMR at FMR 1e-4 from 0.28 % to 0 % (see ``identity/params.py``).
Stored templates hold the rotations only, so what is stored does not change; an
enrolment's own comparisons (its captures' consistency, :mod:`identity.consistency`, and
the duplicate search) match its fresh captures as probes, with the scaled variants.

Filtering runs through the DFT (:mod:`identity.filtering`, since 2026-12-01),
equal to ``cv2.filter2D`` with a reflected border up to float32 rounding: on 150 Tongji
ROIs (all 12 variants), 5 of 5.5 million CompCode bits and no mask bit changed.

Second code: :func:`extract_features` also computes the OrdinalCode of
:mod:`identity.ordinal` (Sun et al., CVPR 2005) at the same rotations and grid; the
matcher fuses the two codes at score level under one alignment and CompCode's mask.

Bit layout of :class:`PalmCode` (shared with :mod:`identity.matcher`): variant ``r``
of the code is an ``(3, H, W)`` bool array (bit plane, row, column), flattened in C
order and packed with :func:`numpy.packbits`; the validity mask of variant ``r`` is
an ``(H, W)`` bool array packed the same way; the ordinal code has the code's layout;
variants are concatenated.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from identity import cells, params
from identity.errors import InvalidImageError
from identity.filtering import SpectralBank
from identity.kernels import competitive_bits
from identity.ordinal import extract_ordinal
from identity.template import BITS_PER_CELL, Template

# Row j = the 3 bit planes of orientation j: 000, 001, 011, 111, 110, 100.
_ORIENTATION_BITS = np.array(
    [[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=bool
)


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of the CompCode extractor; defaults come from :mod:`identity.params`.

    ``work_size`` and ``wavelength_px`` are in pixels of the resized ROI.
    """

    grid_size: int = params.FEATURE_GRID_SIZE
    work_size: int = params.FEATURE_WORK_SIZE
    orientations: int = params.GABOR_ORIENTATIONS
    wavelength_px: float = params.GABOR_WAVELENGTH_PX
    bandwidth_octaves: float = params.GABOR_BANDWIDTH_OCTAVES
    aspect: float = params.GABOR_ASPECT
    mask_window_px: int = params.MASK_WINDOW_PX
    mask_min_local_std: float = params.MASK_MIN_LOCAL_STD
    mask_saturated_low: float = params.MASK_SATURATED_LOW
    mask_saturated_high: float = params.MASK_SATURATED_HIGH
    rotations_deg: tuple[float, ...] = params.FEATURE_ROTATIONS_DEG
    refine_offsets_cells: tuple[tuple[float, float], ...] = params.FEATURE_REFINE_OFFSETS_CELLS
    refine_shears: tuple[float, ...] = params.FEATURE_REFINE_SHEARS
    refine_scales: tuple[float, ...] = ()

    @property
    def refine_warps(self) -> tuple[cells.Warp, ...]:
        """The warped refinement grids: the shears, then the scales (:mod:`identity.cells`).
        Raises ValueError on a scale that is not positive and finite."""
        return (*(cells.shear_warp(s) for s in self.refine_shears),
                *(cells.scale_warp(k) for k in self.refine_scales))


DEFAULT_FEATURE_PARAMS = FeatureParams()
# ROIs this pipeline located in a whole hand also carry scaled refinement variants: their
# scale is the pipeline's own estimate (params.FEATURE_REFINE_SCALES_LOCATED).
LOCATED_FEATURE_PARAMS = FeatureParams(refine_scales=params.FEATURE_REFINE_SCALES_LOCATED)


def feature_params(passthrough: bool) -> FeatureParams:
    """The parameters for an ROI: :data:`DEFAULT_FEATURE_PARAMS` for one that came as an ROI
    (``passthrough``, :class:`identity.roi.RoiResult`), :data:`LOCATED_FEATURE_PARAMS` for
    one located in a whole hand."""
    return DEFAULT_FEATURE_PARAMS if passthrough else LOCATED_FEATURE_PARAMS


@dataclass(frozen=True)
class PalmCode:
    """The features of a palm ROI: CompCode bits, validity masks and OrdinalCode bits of
    every rotation variant.

    ``code``: bool ``(R, 3, H, W)`` (CompCode); ``mask``: bool ``(R, H, W)`` (True = the
    cell is valid, shared by both codes); ``ordinal``: bool ``(R, 3, H, W)`` (OrdinalCode
    of :mod:`identity.ordinal`, orientation, row, column); variant 0 is the unrotated ROI.
    ``refine_offsets``: refinement variants per rotation, half-cell grids, then sheared
    grids, then (ROIs located in a whole hand) scaled grids (the variant order of
    :func:`extract_features`; 0 = every variant is a rotation).
    ``grid`` is ``(H, W)`` in cells. Raises ValueError on a wrong dtype or shape; the
    arrays are made read-only.
    """

    code: npt.NDArray[np.bool_] = field(repr=False)
    mask: npt.NDArray[np.bool_] = field(repr=False)
    ordinal: npt.NDArray[np.bool_] = field(repr=False)
    refine_offsets: int = 0

    def __post_init__(self) -> None:
        c, m, o = self.code, self.mask, self.ordinal
        if c.dtype != np.bool_ or c.ndim != 4 or c.shape[1] != BITS_PER_CELL:
            raise ValueError(f"code must be bool (R, 3, H, W), got {c.dtype} {c.shape}")
        if m.dtype != np.bool_ or m.shape != (c.shape[0], *c.shape[2:]):
            raise ValueError(f"mask must be bool (R, H, W), got {m.dtype} {m.shape}")
        if o.dtype != np.bool_ or o.shape != c.shape:
            raise ValueError(f"ordinal must be bool {c.shape} like the code, got {o.dtype}"
                             f" {o.shape}")
        c.setflags(write=False)
        m.setflags(write=False)
        o.setflags(write=False)

    @property
    def grid(self) -> tuple[int, int]:
        """``(H, W)`` in cells."""
        return int(self.code.shape[2]), int(self.code.shape[3])

    def to_template(self) -> Template:
        """The immutable, serialisable :class:`~identity.template.Template` of both codes."""
        return Template.from_bits(self.code, self.mask, self.ordinal, self.refine_offsets)


def gabor_bank(p: FeatureParams = DEFAULT_FEATURE_PARAMS) -> list[npt.NDArray[np.float32]]:
    """The real, zero-DC Gabor kernels (float32, square, odd side) at ``j * pi / n``.

    The envelope sigma follows the bandwidth relation of Lee (1996), used by Kong &
    Zhang: ``sigma = kappa / omega`` with ``kappa = sqrt(2 ln 2)(2^d + 1)/(2^d - 1)``.
    """
    omega = 2.0 * math.pi / p.wavelength_px
    d2 = 2.0**p.bandwidth_octaves
    kappa = math.sqrt(2.0 * math.log(2.0)) * (d2 + 1.0) / (d2 - 1.0)
    sigma = kappa / omega
    half = int(math.ceil(2.5 * sigma / p.aspect))
    kernels = []
    for j in range(p.orientations):
        k = cv2.getGaborKernel(
            (2 * half + 1, 2 * half + 1), sigma, j * math.pi / p.orientations,
            p.wavelength_px, p.aspect, 0.0, ktype=cv2.CV_32F,
        )
        kernels.append((k - k.mean()).astype(np.float32))  # zero DC: flat light scores 0
    return kernels


def extract_features(
    roi: npt.NDArray[np.uint8], p: FeatureParams = DEFAULT_FEATURE_PARAMS
) -> PalmCode:
    """CompCode and OrdinalCode of a square grey ROI (uint8, (S, S), any S >= grid size),
    per rotation and refinement offset.

    Returns a :class:`PalmCode` on a ``(grid_size, grid_size)`` grid with
    ``R * (1 + O)`` variants, ``R = len(p.rotations_deg)``, ``O =
    len(p.refine_offsets_cells) + len(p.refine_warps)``: first the R rotations, then for
    each rotation ``r`` its O refinement variants (variant ``R + r * O + o``: rotation
    ``r`` pooled with the cell grid moved by ``p.refine_offsets_cells[o]`` cells, then,
    for ``o`` past the offsets, on the grid warped by ``p.refine_warps[o - offsets]``: the
    shears, then the scales; :mod:`identity.cells`). The ordinal code is
    :func:`identity.ordinal.extract_ordinal` with its default parameters at the same
    rotations, offsets, warps and grid. Raises :class:`InvalidImageError` if ``roi`` is not
    a 2-D uint8 square image of at least the grid size, ValueError if an offset is not a
    whole number of work pixels, a scale is not positive and finite, a shear not finite,
    or the work size is not a multiple of the grid while warps are asked for.
    """
    if roi.ndim != 2 or roi.dtype != np.uint8 or roi.shape[0] != roi.shape[1]:
        raise InvalidImageError(f"ROI must be a square 2-D uint8 image, got {roi.shape}")
    if roi.shape[0] < p.grid_size:
        raise InvalidImageError(f"ROI side {roi.shape[0]} is below the grid {p.grid_size}")
    work = cv2.resize(roi, (p.work_size, p.work_size), interpolation=cv2.INTER_AREA)
    img = work.astype(np.float32)
    bank = _spectral_bank(p)
    grids = ((0, 0), *cells.offsets_px(p.refine_offsets_cells, p.work_size, p.grid_size))
    warps = p.refine_warps
    n_grids = len(grids) + len(warps)
    n_rot = len(p.rotations_deg)
    n = p.orientations
    # Cell means of the 6 responses, local std and mean (6 + 2 maps) per variant, in the
    # variant order: rotation r on grid g is variant r (g = 0), else R + r * O + g - 1.
    pooled = np.empty((n_rot * n_grids, n + 2, p.grid_size, p.grid_size), np.float32)
    inside = np.empty((n_rot * n_grids, p.grid_size, p.grid_size), bool)
    for r, angle in enumerate(p.rotations_deg):
        rotated = _rotate(img, angle)
        variants = [r, *(n_rot + r * (n_grids - 1) + g for g in range(n_grids - 1))]
        for v, cells_in in zip(variants, _inside_cells(p.work_size, angle, p.grid_size,
                                                       grids, warps), strict=True):
            inside[v] = cells_in
        responses = bank.correlate(rotated)  # (6, S, S)
        std, mean = _local_stats(rotated, p)
        maps = np.concatenate([responses, std[None], mean[None]])  # (6 + 2, S, S)
        for m, into in zip(maps, pooled[r], strict=True):
            cv2.resize(m, (p.grid_size, p.grid_size), dst=into, interpolation=cv2.INTER_AREA)
        for v, moved in zip(variants[1:], [*cells.pool_offsets(maps, p.grid_size, grids[1:]),
                                           *cells.pool_warped(maps, p.grid_size, warps)],
                            strict=True):
            pooled[v] = moved
    ordinal = extract_ordinal(roi, rotations_deg=p.rotations_deg, grid=p.grid_size,
                              refine_offsets_cells=p.refine_offsets_cells,
                              refine_warps=warps)
    code = competitive_bits(pooled[:, :n], _ORIENTATION_BITS)
    return PalmCode(code, _validity(pooled[:, n], pooled[:, n + 1], p) & inside, ordinal,
                    n_grids - 1)


@functools.lru_cache(maxsize=8)
def _spectral_bank(p: FeatureParams) -> SpectralBank:
    """The Gabor bank of ``p`` prepared for its work image (:mod:`identity.filtering`)."""
    return SpectralBank(gabor_bank(p), p.work_size)


def _rotate(img: npt.NDArray[np.float32], angle_deg: float) -> npt.NDArray[np.float32]:
    """``img`` rotated about its centre (degrees, counter-clockwise), reflected border."""
    h, w = img.shape
    if angle_deg == 0.0:
        return img
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.asarray(out, np.float32)


@functools.lru_cache(maxsize=64)
def _inside_cells(size: int, angle_deg: float, grid: int, grids: tuple[tuple[int, int], ...],
                  warps: tuple[cells.Warp, ...] = ()) -> tuple[npt.NDArray[np.bool_], ...]:
    """Per grid of ``grids`` (offsets in px), then per warped grid of ``warps``
    (:func:`identity.cells.inside_warped`), the cells (bool ``(grid, grid)``, read-only)
    lying wholly on image content after :func:`_rotate` of a ``(size, size)`` image: its
    cover map (1 where a pixel came from the image) depends on the size and angle only."""
    cover = np.ones((size, size), dtype=np.float32)
    if angle_deg != 0.0:
        m = cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), angle_deg, 1.0)
        cover = np.asarray(cv2.warpAffine(cover, m, (size, size), flags=cv2.INTER_LINEAR,
                                          borderValue=0.0), np.float32)
    out = (*(cells.inside(cover, grid, oy, ox) for oy, ox in grids),
           *(cells.inside_warped(cover, grid, w) for w in warps))
    for a in out:
        a.setflags(write=False)
    return out


def _local_stats(img: npt.NDArray[np.float32], p: FeatureParams
                 ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Local grey-level std and mean maps (box of ``p.mask_window_px``), float32 (S, S)."""
    win = (p.mask_window_px, p.mask_window_px)
    mean = np.asarray(cv2.blur(img, win, borderType=cv2.BORDER_REFLECT), np.float32)
    sq = cv2.blur(img * img, win, borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0)).astype(np.float32)
    return std, mean


def _validity(std_g: npt.NDArray[np.float32], mean_g: npt.NDArray[np.float32],
              p: FeatureParams) -> npt.NDArray[np.bool_]:
    """Valid cells: enough local contrast and a non-saturated mean (bool, the cells' shape,
    e.g. (G, G) or (V, G, G)), from the cells' mean local std and mean grey level
    (:func:`_local_stats` pooled)."""
    ok = (std_g >= p.mask_min_local_std) & (mean_g > p.mask_saturated_low)
    return np.asarray(ok & (mean_g < p.mask_saturated_high), dtype=bool)
