"""Identification threshold from a target FPIR and the gallery size.

Method (ISO/IEC 19795-1 terms; the approximation of NIST IR 8271 and of Daugman,
"How iris recognition works", IEEE TCSVT 2004): a probe of an unenrolled person is
compared with the ``N x T`` templates of a gallery of N subjects with T templates
each; it is falsely identified when any comparison reaches the threshold t, so
``FPIR(t) = 1 - (1 - FMR(t))^(N T) ~ N T FMR(t)`` for small FMR. FMR at the rates that
matter (1e-9 and below at N = 1M) cannot be counted on a million impostor scores, so
the measured per-comparison FMR curve is extrapolated with a log-linear fit of its
tail: ``log10 FMR(t) = slope * t + intercept``, fitted where 3e-6 <= FMR <= 1e-2
(:func:`fit_fmr_tail`; the measured constants are in :mod:`identity.params`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def fit_fmr_tail(impostor: npt.ArrayLike, *, low: float = 3e-6,
                 high: float = 1e-2) -> tuple[float, float]:
    """Fit ``log10 FMR(t) = slope * t + intercept`` to impostor scores; returns (slope, intercept).

    ``impostor``: 1-D similarity scores in [0, 1]. Uses the thresholds on a 0.005 grid
    whose empirical FMR lies in [low, high]. Raises ValueError with fewer than 3 such
    thresholds (too few impostor scores for a tail).
    """
    scores = np.sort(np.asarray(impostor, dtype=np.float64).ravel())
    grid = np.arange(0.0, 1.0, 0.005)
    fmr = 1.0 - np.searchsorted(scores, grid, side="left") / max(1, scores.size)
    sel = (fmr >= low) & (fmr <= high)
    if int(sel.sum()) < 3:
        raise ValueError("too few impostor scores in the FMR tail to fit it")
    slope, intercept = np.polyfit(grid[sel], np.log10(fmr[sel]), 1)
    return float(slope), float(intercept)


def fpir(threshold: float, gallery_subjects: int, templates_per_subject: int,
         slope: float, intercept: float) -> float:
    """Estimated FPIR (fraction) at ``threshold`` for N subjects x T templates (see module)."""
    fmr = 10.0 ** (slope * threshold + intercept)
    return -math.expm1(gallery_subjects * templates_per_subject * math.log1p(-min(fmr, 0.5)))


def threshold_for_fpir(target_fpir: float, gallery_subjects: int, templates_per_subject: int,
                       slope: float, intercept: float) -> float:
    """The lowest score threshold whose estimated FPIR is <= ``target_fpir``.

    Raises ValueError unless 0 < target_fpir < 1, N >= 1, T >= 1 and slope < 0.
    """
    if not 0.0 < target_fpir < 1.0 or gallery_subjects < 1 or templates_per_subject < 1:
        raise ValueError("need 0 < target_fpir < 1 and a positive gallery size")
    if slope >= 0.0:
        raise ValueError("an FMR tail must fall with the threshold (slope < 0)")
    n = gallery_subjects * templates_per_subject
    fmr = -math.expm1(math.log1p(-target_fpir) / n)  # solve 1 - (1 - fmr)^n = target
    return (math.log10(fmr) - intercept) / slope
