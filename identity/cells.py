"""Pooling of filter responses into code cells: on the cell grid, moved by part of a cell,
or warped (sheared or scaled) about the map centre.

Both coders (:mod:`identity.features`, :mod:`identity.ordinal`) average a work-image map over
square cells (``cv2.INTER_AREA`` resize to ``grid x grid``). A *refinement variant* pools the
same map with the cell grid moved by a whole number of work pixels less than a cell (half a
cell: 1 px of the 64 px CompCode image, 2 px of the 128 px ordinal image). Since filtering
commutes with translation, that is the code of the image moved by the opposite amount,
without filtering again; the matcher uses these variants to refine the best whole-cell
alignment (:mod:`identity.matcher`). A *warped* variant reads the box-filtered map at the
cell centres of a sheared or scaled grid (:func:`pool_warped`), again without filtering
again.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import numpy.typing as npt

from identity import kernels

F32 = npt.NDArray[np.float32]


def offsets_px(offsets_cells: tuple[tuple[float, float], ...], work_size: int, grid: int
               ) -> tuple[tuple[int, int], ...]:
    """Cell offsets ``(dy, dx)`` (fractions of a cell, in [0, 1)) as work pixels.

    Raises ValueError when an offset is outside [0, 1) or is not a whole number of work
    pixels (``work_size / grid`` pixels per cell).
    """
    out = []
    per_cell = work_size / grid
    for dy, dx in offsets_cells:
        pair = []
        for o in (dy, dx):
            px = o * per_cell
            if not 0.0 <= o < 1.0 or abs(px - round(px)) > 1e-9:
                raise ValueError(f"cell offset {o} is not a whole number of the"
                                 f" {per_cell:g} work px of a cell in [0, 1)")
            pair.append(int(round(px)))
        out.append((pair[0], pair[1]))
    return tuple(out)


def pool(a: F32, grid: int, oy: int = 0, ox: int = 0) -> F32:
    """Mean of the ``(S, S)`` float32 map ``a`` over ``grid x grid`` cells whose grid starts
    ``(oy, ox)`` px into the map: float32 ``(grid, grid)``. The last cells of a moved grid
    reach past the map and read its edge pixels repeated (see :func:`inside`)."""
    if oy == 0 and ox == 0:
        return np.asarray(cv2.resize(a, (grid, grid), interpolation=cv2.INTER_AREA), np.float32)
    return np.asarray(pool_offsets(a[None], grid, ((oy, ox),))[0][0], np.float32)


def pool_offsets(maps: F32, grid: int, offsets: tuple[tuple[int, int], ...]) -> list[F32]:
    """:func:`pool` of a stack of ``(K, S, S)`` float32 maps on the grid moved by each of
    ``offsets`` (px): float32 ``(K, grid, grid)`` per offset, cells past the maps reading
    their edge pixels repeated. A block mean when ``S`` is a multiple of ``grid`` (the
    pipeline's sizes and offsets below a cell, where it equals ``cv2.INTER_AREA``;
    compiled, :func:`identity.kernels.block_means`), else ``cv2.resize`` per map of the
    edge-padded stack."""
    k, s0, s1 = maps.shape
    if s0 % grid == 0 and s1 % grid == 0 and all(
            0 <= oy < s0 // grid and 0 <= ox < s1 // grid for oy, ox in offsets):
        return [kernels.block_means(maps, grid, oy, ox) for oy, ox in offsets]
    py = max((oy for oy, _ in offsets), default=0)
    px = max((ox for _, ox in offsets), default=0)
    padded = maps  # edge pixels repeated past the map, as far as the largest offset
    if py:
        padded = np.concatenate([padded, np.repeat(padded[:, -1:, :], py, axis=1)], axis=1)
    if px:
        padded = np.concatenate([padded, np.repeat(padded[:, :, -1:], px, axis=2)], axis=2)
    return [np.stack([np.asarray(cv2.resize(np.ascontiguousarray(m), (grid, grid),
                                            interpolation=cv2.INTER_AREA), np.float32)
                      for m in padded[:, oy : oy + s0, ox : ox + s1]])
            for oy, ox in offsets]


def inside(cover: F32, grid: int, oy: int = 0, ox: int = 0) -> npt.NDArray[np.bool_]:
    """Cells lying wholly on image content: ``cover`` is a ``(S, S)`` float32 map of 1 where
    a pixel came from the image (0 where a rotation brought in the border); cells of a
    moved grid that reach past the map count as outside. Bool ``(grid, grid)``."""
    if oy == 0 and ox == 0:
        return np.asarray(pool(cover, grid) > 0.999, dtype=bool)
    s0, s1 = cover.shape
    padded = np.zeros((s0 + oy, s1 + ox), np.float32)
    padded[:s0, :s1] = cover
    window = np.ascontiguousarray(padded[oy:, ox:])
    return np.asarray(pool(window, grid) > 0.999, dtype=bool)


Warp = tuple[float, float, float, float]
"""A linear map of the cell grid about the map centre, ``(a, b, c, d)``: the cell centre
at ``(x, y)`` from the centre moves to ``(a x + b y, c x + d y)``."""


def shear_warp(shear: float) -> Warp:
    """The grid sheared sideways: rows slide by ``shear`` px per px of their height."""
    return (1.0, float(shear), 0.0, 1.0)


def scale_warp(scale: float) -> Warp:
    """The grid scaled by ``scale`` about the centre: the code of the ROI scaled by
    ``1 / scale`` about its centre (> 1: the cell centres spread out, the ROI shrunk).
    Raises ValueError unless ``scale`` is positive and finite."""
    if not 0.0 < scale < math.inf:
        raise ValueError(f"a grid scale must be positive and finite, got {scale}")
    return (float(scale), 0.0, 0.0, float(scale))


@functools.lru_cache(maxsize=64)
def _warped_centres(size: int, grid: int, warp: Warp
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Where the box-filtered map is read for each cell of the grid warped by ``warp``
    about the map centre: float32 ``(grid, grid)`` x and y (read-only), in px of a
    ``(size, size)`` map (cell centre ``z`` moved to ``m + W (z - m)`` about the centre
    ``m``, plus where OpenCV's box of side ``cell`` is centred: its mean at pixel ``p``
    covers ``p - cell // 2 .. p - cell // 2 + cell - 1``, centred on ``p - cell // 2 +
    (cell - 1) / 2``: half a pixel before ``p`` for an even box, ``p`` for an odd one)."""
    a, b, c, d = warp
    cell = size / grid
    z = (np.arange(grid) + 0.5) * cell - 0.5
    xs, ys = np.meshgrid(z, z)
    m = (size - 1) / 2.0
    anchor = size // grid // 2 - (size // grid - 1) / 2.0  # 0.5 for even boxes, 0 for odd
    out_x = (a * (xs - m) + b * (ys - m) + m + anchor).astype(np.float32)
    out_y = (c * (xs - m) + d * (ys - m) + m + anchor).astype(np.float32)
    out_x.setflags(write=False)
    out_y.setflags(write=False)
    return out_x, out_y


def pool_warped(maps: F32, grid: int, warps: tuple[Warp, ...]) -> list[F32]:
    """Cell means of a stack of ``(K, S, S)`` float32 maps on the ``grid x grid`` cell grid
    warped about the map centre by each of ``warps`` (:data:`Warp`; sheared:
    :func:`shear_warp`, scaled: :func:`scale_warp`): a float32 ``(K, grid, grid)`` array
    per warp, the box filter run once.

    Each cell's mean is the box mean of its (unwarped) ``S/grid`` px square read at the
    warped cell centre by bilinear interpolation, so the identity warp gives :func:`pool`'s
    cell means up to float32 rounding; a cell centre past the map reads it reflected
    (:func:`inside_warped` tells which cells lie on image content). The warped code of an
    ROI without filtering it again: the filter responses are not warped themselves (a line
    turned by a shear keeps its orientation's response; a box does not grow with a scale),
    the approximation measured in ``identity/params.py`` (``FEATURE_REFINE_SHEARS``,
    ``FEATURE_REFINE_SCALES_LOCATED``). Raises ValueError when the maps are not square,
    ``S`` is not a multiple of ``grid`` or a warp is not four finite numbers.
    """
    k, size, width = maps.shape
    if size != width or size % grid:
        raise ValueError(f"maps of {size} x {width} px do not hold a {grid} x {grid} grid")
    if not warps:
        return []
    cell = size // grid
    # channels last for OpenCV (cv2.merge copies faster than a numpy transpose)
    stacked = cv2.merge(list(maps)) if k > 1 else np.ascontiguousarray(maps[0])
    box = cv2.boxFilter(stacked, -1, (cell, cell), borderType=cv2.BORDER_REFLECT)
    out = []
    for warp in warps:
        xs, ys = _warped_centres(size, grid, _as_warp(warp))
        # (OpenCV reads positions to 1/32 px on more than 4 channels, exactly on 1-4)
        read = cv2.remap(box, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        out.append(np.ascontiguousarray(read.reshape(grid, grid, k).transpose(2, 0, 1),
                                        np.float32))
    return out


def inside_warped(cover: F32, grid: int, warp: Warp) -> npt.NDArray[np.bool_]:
    """The cells of the grid warped by ``warp`` (:func:`pool_warped`) lying wholly on
    image content: bool ``(grid, grid)``; ``cover`` as in :func:`inside` (a cell reaching
    past the map counts as outside). Raises ValueError when ``cover`` is not square, its
    side not a multiple of ``grid`` or ``warp`` not four finite numbers."""
    size = cover.shape[0]
    if cover.shape != (size, size) or size % grid:
        raise ValueError(f"a {cover.shape} cover does not hold a {grid} x {grid} grid")
    cell = size // grid
    xs, ys = _warped_centres(size, grid, _as_warp(warp))
    box = cv2.boxFilter(np.asarray(cover, np.float32), -1, (cell, cell),
                        borderType=cv2.BORDER_CONSTANT)
    covered = cv2.remap(box, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)
    return np.asarray(covered > 0.999, dtype=bool)


def _as_warp(warp: Warp) -> Warp:
    """``warp`` as four finite floats (a hashable cache key). Raises ValueError otherwise
    (a NaN or infinite entry would read every cell off the map, silently invalid)."""
    if len(warp) != 4:
        raise ValueError(f"a grid warp is (a, b, c, d), got {warp!r}")
    a, b, c, d = (float(v) for v in warp)
    if not all(math.isfinite(v) for v in (a, b, c, d)):
        raise ValueError(f"a grid warp must be finite, got {warp!r}")
    return (a, b, c, d)
