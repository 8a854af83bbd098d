"""Stable weight changes of one shelf: moving median, stability window, level differences.

Method: a moving median (window ``median_window``) removes spikes; a shelf is *stable* over a
window of ``stable_window_s`` when every plate's filtered weight varies by less than
``stable_range_g`` (the stability test of weight-triggered event detection in autonomous
stores, e.g. Falcão et al., "AIM3S: Autonomous Inventory Monitoring through Multi-Modal
Sensing for Cashier-Less Convenience Stores", BuildSys 2019). Each unstable stretch between two
stable stretches is a candidate event; its per-plate change is the level after minus the level
before, which cancels slow drift and any transient (a hand) that has left. Changed plates are
grouped into runs of adjacent plates; a run mixing signs is split into same-sign runs (the
inference decides whether the halves are one item moved along the shelf). Each change carries
the standard deviation of its total (:func:`level_sigmas`: the two level medians' noise, each
plate's sensor noise estimated from the stream itself, and drift between them), which the
explanation's likelihood uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from cart.shelf.params import InferenceParams
from cart.shelf.planogram import ShelfId
from cart.shelf.weights import FloatArray, ShelfWeights


@dataclass(frozen=True)
class WeightChange:
    """A settled change on adjacent plates of one shelf.

    ``plates``: the changed plate indices (increasing); ``delta_g``: total change in grams over
    them and their unchanged neighbours (negative = weight removed); ``t_start_s`` /
    ``t_end_s``: the unstable stretch, seconds since the shelf stream's start; ``loads``:
    (plate, grams) change of each changed plate and unchanged neighbour, summing to
    ``delta_g`` (empty: unknown, only the total is used); ``sigma_g``: standard deviation of
    ``delta_g`` in grams from sensor noise and drift (see :func:`level_sigmas`; None:
    unknown, explanations then assume ``InferenceParams.change_sigma_g``).
    """

    shelf: ShelfId
    plates: tuple[int, ...]
    delta_g: float
    t_start_s: float
    t_end_s: float
    loads: tuple[tuple[int, float], ...] = ()
    sigma_g: float | None = None


def moving_median(grams: FloatArray, window: int) -> FloatArray:
    """Centred moving median along axis 0 of (N, P) float64 grams; edges use shorter windows."""
    if window <= 1 or grams.shape[0] < window:
        return grams.copy()
    half = window // 2
    padded = np.pad(grams, ((half, window - 1 - half), (0, 0)), mode="edge")
    out: FloatArray = np.median(sliding_window_view(padded, window, axis=0), axis=-1)
    return out


def noise_sigma(grams: FloatArray) -> FloatArray:
    """Per-plate sensor noise sigma, shape (P,) grams, of raw (N, P) weights: estimated
    robustly from the median absolute first difference (x 1.4826 / sqrt 2), which changes,
    touches and drift barely move (zeros when N < 3)."""
    if grams.shape[0] < 3:
        return np.zeros(grams.shape[1])
    steps = np.abs(np.diff(grams, axis=0))
    out: FloatArray = 1.4826 * np.median(steps, axis=0) / np.sqrt(2.0)
    return out


def stable_range(grams: FloatArray, params: InferenceParams) -> FloatArray:
    """Per-plate stability range, shape (P,) grams: ``stable_range_g``, widened on noisy load
    cells to ``stable_range_sigmas`` x the plate's sensor noise sigma (:func:`noise_sigma`)."""
    out: FloatArray = np.maximum(
        params.stable_range_g, params.stable_range_sigmas * noise_sigma(grams)
    )
    return out


def level_sigmas(
    noise: FloatArray, n_before: int, n_after: int, gap_s: float, params: InferenceParams
) -> FloatArray:
    """Per-plate standard deviation (grams) of a level difference: each level is the median of
    ``n_before`` / ``n_after`` filtered samples (variance ``level_variance_factor`` x
    sigma^2 / n) and the two levels' centres are ``gap_s`` seconds apart, over which a plate
    drifts by ``drift_g_per_min`` (one standard deviation of the drift rate)."""
    drift = params.drift_g_per_min / 60.0 * gap_s
    var = params.level_variance_factor * noise**2 * (1.0 / max(1, n_before) + 1.0 / max(1, n_after))
    out: FloatArray = np.sqrt(var + drift**2)
    return out


def stable_runs(shelf: ShelfWeights, params: InferenceParams) -> list[tuple[int, int]]:
    """Maximal stretches ``(first, last)`` (sample indices, inclusive) where the shelf is stable."""
    n = shelf.times_s.shape[0]
    if n < 2:
        return [(0, n - 1)] if n else []
    dt = float(np.median(np.diff(shelf.times_s)))
    width = max(2, int(round(params.stable_window_s / dt)))
    if n < width:
        return []
    filtered = moving_median(shelf.grams, params.median_window)
    windows = sliding_window_view(filtered, width, axis=0)  # (n - width + 1, P, width)
    spread = windows.max(axis=-1) - windows.min(axis=-1)
    ok = np.all(spread < stable_range(shelf.grams, params), axis=1)
    runs: list[tuple[int, int]] = []
    start = None
    for i, flag in enumerate(ok.tolist()):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1 + width - 1))
            start = None
    if start is not None:
        runs.append((start, len(ok) - 1 + width - 1))
    shortest = params.min_level_s / dt
    keep = [r for i, r in enumerate(runs) if r[1] - r[0] + 1 >= shortest or i in (0, len(runs) - 1)]
    return keep


def detect_changes(shelf: ShelfWeights, params: InferenceParams) -> list[WeightChange]:
    """Settled weight changes of one shelf, in time order (see the module docstring)."""
    runs = stable_runs(shelf, params)
    filtered = moving_median(shelf.grams, params.median_window)
    dt = float(np.median(np.diff(shelf.times_s))) if shelf.times_s.shape[0] > 1 else 1.0
    span = max(1, int(round(params.level_window_s / dt)))
    guard = int(round(params.level_guard_s / dt))
    noise = noise_sigma(shelf.grams)
    changes: list[WeightChange] = []
    for (a0, a1), (b0, b1) in zip(runs, runs[1:], strict=False):
        # skip the guard only where the stretch is long enough to keep some samples.
        g_a = guard if a1 - a0 + 1 > 2 * guard else 0
        g_b = guard if b1 - b0 + 1 > 2 * guard else 0
        lo_a, hi_a = max(a0, a1 - g_a - span + 1), a1 - g_a + 1
        lo_b, hi_b = b0 + g_b, min(b1, b0 + g_b + span - 1) + 1
        before = np.median(filtered[lo_a:hi_a], axis=0)
        after = np.median(filtered[lo_b:hi_b], axis=0)
        delta = after - before
        t0, t1 = float(shelf.times_s[a1]), float(shelf.times_s[b0])
        gap = 0.5 * float(shelf.times_s[lo_b] + shelf.times_s[hi_b - 1])
        gap -= 0.5 * float(shelf.times_s[lo_a] + shelf.times_s[hi_a - 1])
        sigmas = level_sigmas(noise, hi_a - lo_a, hi_b - lo_b, gap, params)
        changes.extend(_groups(shelf, delta, sigmas, t0, t1, params))
    return changes


def _groups(
    shelf: ShelfWeights,
    delta: FloatArray,
    sigmas: FloatArray,
    t0: float,
    t1: float,
    params: InferenceParams,
) -> list[WeightChange]:
    changed = np.abs(delta) > params.plate_change_g
    groups: list[list[int]] = []
    for j in np.flatnonzero(changed).tolist():
        if groups and shelf.plates[j] == shelf.plates[groups[-1][-1]] + 1:
            groups[-1].append(j)
        else:
            groups.append([j])
    out: list[WeightChange] = []
    for group in groups:
        parts = [group]
        signs = np.sign(delta[group])
        if not bool(np.all(signs == signs[0])):
            # a pick next to a put-back (or one item moved along the shelf): each same-sign
            # run is its own change.
            parts = _sign_runs(group, delta)
        out.extend(_change(shelf, part, changed, delta, sigmas, t0, t1) for part in parts)
    return [c for c in out if abs(c.delta_g) >= params.min_change_g]


def _sign_runs(group: list[int], delta: FloatArray) -> list[list[int]]:
    runs: list[list[int]] = [[group[0]]]
    for j in group[1:]:
        if np.sign(delta[j]) == np.sign(delta[runs[-1][-1]]):
            runs[-1].append(j)
        else:
            runs.append([j])
    return runs


def _change(
    shelf: ShelfWeights,
    part: list[int],
    changed: npt.NDArray[np.bool_],
    delta: FloatArray,
    sigmas: FloatArray,
    t0: float,
    t1: float,
) -> WeightChange:
    # unchanged neighbouring plates may hold a small share of a product spanning plates.
    cols = set(part)
    for j, step in ((part[0] - 1, -1), (part[-1] + 1, 1)):
        if (
            0 <= j < len(shelf.plates)
            and not changed[j]
            and shelf.plates[j] == shelf.plates[j - step] + step
        ):
            cols.add(j)
    loads = tuple((shelf.plates[j], float(delta[j])) for j in sorted(cols))
    total = sum(g for _, g in loads)
    # the plates' level errors are independent: the total's variance is their sum.
    sigma = float(np.sqrt(sum(float(sigmas[j]) ** 2 for j in cols)))
    plates = tuple(shelf.plates[j] for j in part)
    return WeightChange(shelf.shelf, plates, total, t0, t1, loads, sigma)
