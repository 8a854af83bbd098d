"""Compiled inner loops (numba): the matcher's masked Hamming counts over packed words, the
coders' cell means of filter responses (:func:`block_means`) and CompCode's winning
orientation bits per cell (:func:`competitive_bits`).

:mod:`identity.matcher` defines the distances; this module only computes them without numpy
temporaries. For a probe's S aligned variants and M references, all packed as ``(rows,
words)`` uint64 (masks repeated over the 3 bit planes of each cell), the counts at an
alignment ``s`` and reference ``m`` are::

    both  = probe_mask[s] & ref_mask[m]
    valid = popcount(both)
    diff  = popcount((probe_code[s] ^ ref_code[m]) & both)
    diff_ord = popcount((probe_ordinal[s] ^ ref_ordinal[m]) & both)

summed over the words, and a distance is ``(w * diff + (1 - w) * diff_ord) / valid`` where
``valid >= min_valid`` (``w`` = 1 for CompCode alone), else no alignment. The arithmetic is
that of the numpy expression it replaced (float64, same operation order, no fast-math): on
300 Tongji templates (43 x 300 fused, CompCode and unrefined distances) the two gave the
same distances bit for bit, and ``tests/unit/identity/test_matcher_kernels.py`` checks the
kernels against the definition, one alignment at a time. The kernels release the GIL, so
threads of a server score in parallel; they run on one core each.

``popcount`` is LLVM's ``ctpop`` (the CPU's POPCNT instruction where it has one). Compiled
on first use (about 1.7 s) and cached next to this file (``__pycache__``, or numba's
user-wide cache when that folder is read-only; loading the cache takes about 0.2 s); with
neither writable, compiled in every process. ``storefront serve`` and the device gateway
call :func:`warm_up` at start-up so that no shopper waits for it. With
``NUMBA_DISABLE_JIT=1`` the same loops run as plain Python (slowly, for debugging).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import njit, types
from numba.extending import intrinsic, overload

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]


_F = TypeVar("_F", bound=Callable[..., Any])


def _compiled(**options: Any) -> Callable[[_F], _F]:
    """``numba.njit(**options)`` with an on-disk cache where numba can write one (next to
    this file, else its user-wide cache), else without one: compiled once per process
    instead of failing at import on a read-only install with no writable home."""
    def wrap(function: _F) -> _F:
        try:
            return cast(_F, njit(cache=True, **options)(function))
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return cast(_F, njit(**options)(function))
    return wrap


@intrinsic
def _ctpop(typingctx: Any, x: Any) -> Any:
    """Number of set bits of a uint64 (LLVM ``ctpop``), callable from compiled code only."""
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


def _popcount(x: int) -> int:
    """Number of set bits of a uint64: ``int.bit_count`` in Python (``NUMBA_DISABLE_JIT=1``),
    LLVM ``ctpop`` in compiled code (the overload below)."""
    return int(x).bit_count()


@overload(_popcount, inline="always")
def _popcount_compiled(x: Any) -> Any:
    ctpop = cast(Callable[[Any], int], _ctpop)  # typed as it is called when compiled

    def implementation(x: Any) -> int:  # the same parameters as the typing function's
        return ctpop(x)

    return implementation


@_compiled(nogil=True, inline="always")
def _counts(pc: U64, pm: U64, po: U64, s: int, rc: U64, rm: U64, ro: U64, m: int,
            fused: bool) -> tuple[int, int, int]:  # pragma: no cover - compiled
    valid = 0
    diff = 0
    diff_ord = 0
    for k in range(pc.shape[1]):
        both = pm[s, k] & rm[m, k]
        valid += _popcount(both)
        diff += _popcount((pc[s, k] ^ rc[m, k]) & both)
        if fused:
            diff_ord += _popcount((po[s, k] ^ ro[m, k]) & both)
    return valid, diff, diff_ord


@_compiled(nogil=True, inline="always")
def _fraction(valid: int, diff: int, diff_ord: int, weight: float, min_valid: float,
              fused: bool) -> float:  # pragma: no cover - compiled
    if valid < min_valid:
        return math.inf
    if fused:
        return (weight * float(diff) + (1.0 - weight) * float(diff_ord)) / float(valid)
    return float(diff) / float(valid)


@_compiled(nogil=True)
def _alignment_counts(pc: U64, pm: U64, po: U64, rc: U64, rm: U64, ro: U64, fused: bool,
                      valid: I32, diff: I32, diff_ord: I32) -> None:  # pragma: no cover
    for m in range(rc.shape[0]):
        for s in range(pc.shape[0]):
            v, d, o = _counts(pc, pm, po, s, rc, rm, ro, m, fused)
            valid[s, m] = v
            diff[s, m] = d
            diff_ord[s, m] = o


@_compiled(nogil=True)
def _best_distances(pc: U64, pm: U64, po: U64, rc: U64, rm: U64, ro: U64, fused: bool,
                    weight: float, min_valid: float, fc: U64, fm: U64, fo: U64,
                    n_rot: int, n_off: int, n_shift: int, no_match: float,
                    out: F64) -> None:  # pragma: no cover - compiled
    refine = n_off > 0
    for m in range(rc.shape[0]):
        best = math.inf
        arg = 0
        for s in range(pc.shape[0]):
            v, d, o = _counts(pc, pm, po, s, rc, rm, ro, m, fused)
            f = _fraction(v, d, o, weight, min_valid, fused)
            if f < best:
                best = f
                arg = s
        if best == math.inf:
            out[m] = no_match
            continue
        if refine:
            r = arg // (n_shift * n_shift)
            dy = (arg // n_shift) % n_shift
            dx = arg % n_shift
            for off in range(n_off):
                first = (r * n_off + off) * n_shift
                for sy in range(-1, 2):
                    cy = min(max(dy + sy, 0), n_shift - 1)
                    for sx in range(-1, 2):
                        cx = min(max(dx + sx, 0), n_shift - 1)
                        row = (first + cy) * n_shift + cx
                        v, d, o = _counts(fc, fm, fo, row, rc, rm, ro, m, True)
                        f = _fraction(v, d, o, weight, min_valid, True)
                        if f < best:
                            best = f
        out[m] = best


@_compiled(nogil=True)
def _translate_rows(rows: U64, k: int, width: int, row_bytes: int,
                    out: npt.NDArray[np.uint8]) -> None:  # pragma: no cover - compiled
    v_n, planes, height = rows.shape
    n = 2 * k + 1
    full = (np.uint64(1) << np.uint64(width)) - np.uint64(1) if width < 64 else ~np.uint64(0)
    for v in range(v_n):
        for iy in range(n):
            dy = iy - k
            for ix in range(n):
                dx = ix - k
                row = (v * n + iy) * n + ix
                for p in range(planes):
                    for y in range(max(0, dy), min(height, height + dy)):
                        value = rows[v, p, y - dy]
                        if dx > 0:
                            value = value >> np.uint64(dx)
                        elif dx < 0:
                            value = (value << np.uint64(-dx)) & full
                        at = (p * height + y) * row_bytes
                        for b in range(row_bytes):
                            out[row, at + b] = np.uint8(
                                (value >> np.uint64(8 * (row_bytes - 1 - b))) & np.uint64(255))


def translated_words(bits: npt.NDArray[np.bool_], max_shift: int) -> U64 | None:
    """Every translation of every variant of ``bits``, packed: ``(V * n * n, words)`` uint64,
    n = 2 * max_shift + 1, rows in the order variant, dy, dx (each from -max_shift up).

    ``bits``: bool ``(V, P, H, W)``; the translated ``(P, H, W)`` array (cell ``(y, x)``
    taken from ``(y - dy, x - dx)``, vacated cells 0) is flattened and packed as
    ``numpy.packbits`` does, zero-padded to whole uint64 words, so the rows equal
    :func:`identity.matcher._pack_words` of the translated arrays. Each row of W bits is
    packed once and moved as an integer (a shift for dx, another row for dy). Returns
    ``None`` when W is not a multiple of 8 or above 64 (the caller translates the bits
    itself). Raises ValueError for ``max_shift < 0`` or a non-4-D array.
    """
    if max_shift < 0 or bits.ndim != 4:
        raise ValueError(f"need (V, P, H, W) bits and max_shift >= 0, got {bits.shape}")
    v_n, planes, height, width = bits.shape
    if width % 8 or width > 64:
        return None
    row_bytes = width // 8
    packed = np.packbits(bits, axis=-1).astype(np.uint64)  # (V, P, H, row_bytes), big-endian
    weights = np.uint64(1) << (np.uint64(8) * np.arange(row_bytes - 1, -1, -1, dtype=np.uint64))
    rows = np.ascontiguousarray((packed * weights).sum(axis=-1, dtype=np.uint64))
    n = 2 * max_shift + 1
    total = planes * height * row_bytes
    out = np.zeros((v_n * n * n, total + (-total) % 8), np.uint8)
    _translate_rows(rows, max_shift, width, row_bytes, out)
    return out.view(np.uint64)


def alignment_counts(probe: tuple[U64, U64, U64], refs: tuple[U64, U64, U64], fused: bool
                     ) -> tuple[I32, I32, I32]:
    """Jointly valid, differing CompCode and (``fused``) differing OrdinalCode bits at every
    alignment: three int32 ``(S, M)`` arrays (the last all 0 unless ``fused``).

    ``probe`` = (codes, masks, ordinal) of the S aligned variants, ``refs`` = the same of M
    references, each ``(rows, words)`` uint64 C-contiguous with equal ``words`` (ordinal
    arrays may be ``(0, words)`` when not ``fused``). Raises ValueError on other shapes.
    """
    pc, pm, po = _checked(probe, fused)
    rc, rm, ro = _checked(refs, fused, words=pc.shape[1])
    shape = (pc.shape[0], rc.shape[0])
    valid, diff, diff_ord = (np.zeros(shape, np.int32) for _ in range(3))
    _alignment_counts(pc, pm, po, rc, rm, ro, fused, valid, diff, diff_ord)
    return valid, diff, diff_ord


def best_distances(probe: tuple[U64, U64, U64], refs: tuple[U64, U64, U64], *, fused: bool,
                   weight: float, min_valid: float, no_match: float,
                   refinement: tuple[U64, U64, U64] | None = None, n_rot: int = 0,
                   n_off: int = 0, n_shift: int = 1) -> F64:
    """Smallest distance per reference over the S whole-cell alignments, then (with
    ``refinement``) over the refinement rows around the best one: ``(M,)`` float64.

    ``probe``/``refs`` as in :func:`alignment_counts`; ``weight`` is CompCode's weight of the
    fused distance, ``min_valid`` the jointly valid bits an alignment needs; a reference
    with no such alignment gets ``no_match``. The whole-cell rows are ordered (rotation,
    dy, dx) with ``n_shift`` translations per axis; ``refinement`` = (codes, masks,
    ordinal) rows ordered (rotation, offset, dy, dx) with ``n_off`` offsets: for each
    reference, the ``n_off`` x 3 x 3 rows of the best whole-cell alignment's rotation at its
    translation +-1 (clipped) are also scored, fused. Raises ValueError on bad shapes.
    """
    pc, pm, po = _checked(probe, fused)
    rc, rm, ro = _checked(refs, fused or refinement is not None, words=pc.shape[1])
    if refinement is None:
        fc = fm = fo = np.zeros((0, pc.shape[1]), np.uint64)
        n_off = 0
    else:
        fc, fm, fo = _checked(refinement, True, words=pc.shape[1])
        if n_rot * n_shift * n_shift != pc.shape[0] or fc.shape[0] != n_rot * n_off * (
                n_shift * n_shift):
            raise ValueError("refinement rows do not match n_rot, n_off and n_shift")
    out = np.empty(rc.shape[0], np.float64)
    _best_distances(pc, pm, po, rc, rm, ro, fused, float(weight), float(min_valid),
                    fc, fm, fo, n_rot, n_off, n_shift, float(no_match), out)
    return out


def _checked(arrays: tuple[U64, U64, U64], with_ordinal: bool, words: int | None = None
             ) -> tuple[U64, U64, U64]:
    """The three arrays as C-contiguous uint64 of one shape (the third is not read, and may
    be empty, when not ``with_ordinal``); raises ValueError otherwise."""
    codes, masks, ordinal = (np.ascontiguousarray(a, dtype=np.uint64) for a in arrays)
    if codes.ndim != 2 or masks.shape != codes.shape:
        raise ValueError(f"packed codes {codes.shape} and masks {masks.shape} differ")
    if words is not None and codes.shape[1] != words:
        raise ValueError(f"{codes.shape[1]} words per row, expected {words}")
    if with_ordinal and ordinal.shape != codes.shape:
        raise ValueError(f"packed ordinal codes {ordinal.shape} != codes {codes.shape}")
    return codes, masks, ordinal


@_compiled(nogil=True)
def _block_means(maps: F32, grid: int, fy: int, fx: int, oy: int, ox: int,
                 out: F32) -> None:  # pragma: no cover - compiled
    k_n, s0, s1 = maps.shape
    scale = np.float32(1.0 / (fy * fx))
    last = grid - 1
    for k in range(k_n):
        for gy in range(grid):
            acc = out[k, gy]
            acc[:] = np.float32(0.0)
            for y in range(fy):
                row = maps[k, min(oy + gy * fy + y, s0 - 1)]
                for x in range(fx):
                    for gx in range(last):  # every block's y-th row, x-th pixel
                        acc[gx] += row[ox + x + gx * fx]
                    acc[last] += row[min(ox + x + last * fx, s1 - 1)]
            for gx in range(grid):
                acc[gx] = acc[gx] * scale


def block_means(maps: F32, grid: int, oy: int, ox: int) -> F32:
    """Means of ``(K, S0, S1)`` float32 maps over ``grid x grid`` blocks of ``S0 / grid``
    by ``S1 / grid`` px whose grid starts ``(oy, ox)`` px into the maps; blocks reaching
    past the maps read their last row or column repeated; ``0 <= oy < S0 / grid`` and
    ``0 <= ox < S1 / grid``. Float32 ``(K, grid, grid)``.

    Each block is summed in float32, row by row from zero, then multiplied by the float32
    ``1 / (block area)``: the arithmetic, and so the result bit for bit, of numpy adding the
    block's strided slices in that order. Raises ValueError when a side is not a multiple
    of ``grid``, an offset is outside one cell, or ``maps`` is not 3-D float32.
    """
    if maps.ndim != 3 or maps.dtype != np.float32 or grid <= 0:
        raise ValueError(f"need (K, S0, S1) float32 maps and grid > 0, got {maps.dtype}"
                         f" {maps.shape}, grid {grid}")
    k_n, s0, s1 = maps.shape
    if s0 % grid or s1 % grid or not (0 <= oy < s0 // grid and 0 <= ox < s1 // grid):
        raise ValueError(f"maps {s0} x {s1} px are not whole cells of grid {grid}, or"
                         f" offset ({oy}, {ox}) px is not within one cell")
    out = np.empty((k_n, grid, grid), np.float32)
    _block_means(np.ascontiguousarray(maps), grid, s0 // grid, s1 // grid, oy, ox, out)
    return out


@_compiled(nogil=True)
def _competitive_bits(responses: F32, table: npt.NDArray[np.bool_],
                      out: npt.NDArray[np.bool_]) -> None:  # pragma: no cover - compiled
    v_n, k_n, cells = responses.shape
    planes = table.shape[1]
    best = np.empty(cells, np.float32)
    arg = np.empty(cells, np.intp)
    nan_at = np.empty(cells, np.intp)
    for v in range(v_n):
        for i in range(cells):  # the smallest value (a NaN first: NaN)
            best[i] = responses[v, 0, i]
        for k in range(1, k_n):
            for i in range(cells):
                value = responses[v, k, i]
                best[i] = value if value < best[i] else best[i]
        for i in range(cells):
            arg[i] = k_n
            nan_at[i] = k_n
        for k in range(k_n - 1, -1, -1):  # the first index holding it, and the first NaN
            for i in range(cells):
                value = responses[v, k, i]
                arg[i] = k if value == best[i] else arg[i]
                nan_at[i] = k if value != value else nan_at[i]
        for i in range(cells):  # numpy.argmin: the first NaN, else the first minimum
            winner = nan_at[i] if nan_at[i] < k_n else arg[i]
            for b in range(planes):
                out[v, b, i] = table[winner, b]


def competitive_bits(responses: F32, table: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The bits of the winning (smallest) response per cell: bool ``(V, B, H, W)`` with
    ``out[v, :, y, x] = table[argmin_k responses[v, k, y, x]]``.

    ``responses``: float32 ``(V, K, H, W)``; ``table``: bool ``(K, B)``. The winner is
    :func:`numpy.argmin`'s over ``k``: the first of equal minima, or the first NaN where
    there is one; so the result equals ``numpy.moveaxis(table[numpy.argmin(responses,
    axis=1)], -1, 1)`` bit for bit, in one pass without temporaries. Raises ValueError
    when ``responses`` is not 4-D float32 or ``table`` not bool with K rows.
    """
    if responses.ndim != 4 or responses.dtype != np.float32 or table.ndim != 2 \
            or table.dtype != np.bool_ or table.shape[0] != responses.shape[1] \
            or responses.shape[1] == 0:
        raise ValueError(f"need (V, K, H, W) float32 responses and a bool (K, B) table, got"
                         f" {responses.dtype} {responses.shape} and {table.dtype}"
                         f" {table.shape}")
    v_n, k_n, height, width = responses.shape
    out = np.empty((v_n, table.shape[1], height, width), np.bool_)
    _competitive_bits(np.ascontiguousarray(responses).reshape(v_n, k_n, height * width),
                      np.ascontiguousarray(table), out.reshape(v_n, table.shape[1], -1))
    return out


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, on tiny inputs: the first real
    call then costs no compilation. Raises nothing of its own."""
    words = np.zeros((1, 1), np.uint64)
    best_distances((words, words, words), (words, words, words), fused=True, weight=0.5,
                   min_valid=1.0, no_match=1.0)
    best_distances((words, words, words), (words, words, words), fused=False, weight=1.0,
                   min_valid=1.0, no_match=1.0,
                   refinement=(words, words, words), n_rot=1, n_off=1, n_shift=1)
    alignment_counts((words, words, words), (words, words, words), True)
    translated_words(np.zeros((1, 1, 1, 8), bool), 0)
    block_means(np.zeros((1, 2, 2), np.float32), 1, 0, 0)
    competitive_bits(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1), np.bool_))
