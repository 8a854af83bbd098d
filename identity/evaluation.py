"""Biometric performance metrics on comparison scores (pure numpy).

Terms and definitions follow ISO/IEC 19795-1:2021 (Biometric performance testing and
reporting, Part 1): a *genuine* comparison is of two samples of the same biometric
characteristic (here: one palm), an *impostor* comparison of samples of different
ones. Scores are similarities (higher = more alike, as :mod:`identity.matcher`
produces); a comparison is a *match* when its score is ``>= threshold``.

* FMR(t): fraction of impostor scores ``>= t`` (false match rate).
* FNMR(t): fraction of genuine scores ``< t`` (false non-match rate).
* EER: the rate where FMR and FNMR are equal, taken at the crossing of the two
  step functions (mean of the two rates at the threshold where FNMR - FMR changes
  sign, as bob.measure does).
* FNMR at FMR ``f``: the lowest FNMR over thresholds whose FMR is ``<= f``. It is
  only resolvable with at least ``ceil(1 / f)`` impostor comparisons; with fewer,
  :func:`fnmr_at_fmr` returns ``None`` instead of a number that the data cannot back.
* Rank-1 identification rate (closed set): fraction of probes whose best-scoring
  enrolled identity is their own (ISO/IEC 19795-1 "identification rate at rank 1").

All rates are fractions in [0, 1], never percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class MetricsInputError(ValueError):
    """Scores are empty where they are needed, not finite, or of mismatched shapes."""


def _scores(values: npt.ArrayLike, what: str, *, allow_empty: bool = False) -> F64:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0 and not allow_empty:
        raise MetricsInputError(f"no {what} scores")
    if not np.all(np.isfinite(a)):
        raise MetricsInputError(f"{what} scores must be finite")
    return a


@dataclass(frozen=True)
class DetCurve:
    """Error rates at every distinct score threshold, thresholds ascending.

    ``thresholds``, ``fmr``, ``fnmr``: float64 ``(T,)``; the match rule is
    ``score >= threshold``. ``fmr`` falls and ``fnmr`` rises along the array.
    """

    thresholds: F64
    fmr: F64
    fnmr: F64


def det_curve(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> DetCurve:
    """FMR and FNMR at each distinct score (plus one threshold above all scores).

    ``genuine``, ``impostor``: 1-D float scores. Raises :class:`MetricsInputError`
    when either is empty or not finite.
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    top = max(float(g[-1]), float(i[-1]))
    thresholds = np.unique(np.concatenate([g, i, [np.nextafter(top, np.inf)]]))
    fnmr = np.searchsorted(g, thresholds, side="left") / g.size
    fmr = 1.0 - np.searchsorted(i, thresholds, side="left") / i.size
    return DetCurve(thresholds, fmr.astype(np.float64), fnmr.astype(np.float64))


def equal_error_rate(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> float:
    """EER (fraction) of the score lists; see the module docstring for the definition.

    Raises :class:`MetricsInputError` when either list is empty or not finite.
    """
    curve = det_curve(genuine, impostor)
    diff = curve.fnmr - curve.fmr  # rises from <= 0 to >= 0 along the thresholds
    k = int(np.searchsorted(diff, 0.0, side="left"))
    if k < diff.size and diff[k] == 0.0:
        return float(curve.fmr[k])
    lo, hi = max(k - 1, 0), min(k, diff.size - 1)
    # The crossing lies between lo and hi: take the rates where |FNMR - FMR| is smaller.
    best = lo if abs(diff[lo]) <= abs(diff[hi]) else hi
    return float((curve.fmr[best] + curve.fnmr[best]) / 2.0)


def min_impostors_for(target_fmr: float) -> int:
    """Impostor comparisons needed to resolve ``target_fmr`` (``ceil(1 / target_fmr)``)."""
    if not 0.0 < target_fmr < 1.0:
        raise MetricsInputError("target FMR must be in (0, 1)")
    return math.ceil(1.0 / target_fmr - 1e-9)


def fnmr_at_fmr(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, target_fmr: float
) -> float | None:
    """Lowest FNMR (fraction) at a threshold whose FMR is ``<= target_fmr``.

    Returns ``None`` when there are fewer than :func:`min_impostors_for` impostor
    scores. Raises :class:`MetricsInputError` on empty or non-finite scores.
    """
    i = _scores(impostor, "impostor")
    if i.size < min_impostors_for(target_fmr):
        return None
    curve = det_curve(genuine, i)
    ok = curve.fmr <= target_fmr + 1e-15
    return float(curve.fnmr[ok].min())


def score_at_fmr(impostor: npt.ArrayLike, target_fmr: float) -> float | None:
    """Lowest threshold (score) whose FMR is ``<= target_fmr``; ``None`` if unresolvable."""
    i = np.sort(_scores(impostor, "impostor"))
    if i.size < min_impostors_for(target_fmr):
        return None
    allowed = math.floor(target_fmr * i.size + 1e-9)  # impostors that may pass
    if allowed == 0:
        return float(np.nextafter(i[-1], np.inf))
    return float(np.nextafter(i[-allowed - 1], np.inf)) if allowed < i.size else float(i[0])


def rank1_rate(
    scores: npt.ArrayLike, probe_ids: Sequence[str], reference_ids: Sequence[str]
) -> float | None:
    """Closed-set rank-1 identification rate (fraction) from a score matrix.

    ``scores``: ``(N probes, M references)`` similarities; ``probe_ids`` (N) and
    ``reference_ids`` (M) are identity labels. A score of ``-inf`` marks a pair that was
    not compared (leave one out: a capture against itself). Each probe's identities are
    ranked by their best reference score; only probes with a compared reference of their
    own identity count. A tie at the top counts as a miss unless all tied identities are
    the probe's. Returns ``None`` when no probe counts. Raises
    :class:`MetricsInputError` on shape mismatches or NaN scores.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape != (len(probe_ids), len(reference_ids)):
        raise MetricsInputError(f"score matrix {s.shape} does not fit the id lists")
    if np.isnan(s).any() or np.isposinf(s).any():
        raise MetricsInputError("scores must be finite or -inf (not compared)")
    labels, ref_idx = np.unique(np.asarray(reference_ids, dtype=object), return_inverse=True)
    if s.shape[0] == 0 or labels.size == 0:
        return None
    per_id = np.full((s.shape[0], labels.size), -np.inf)
    for k in range(labels.size):
        per_id[:, k] = s[:, ref_idx == k].max(axis=1)
    lookup = {str(label): k for k, label in enumerate(labels)}
    own = np.array([lookup.get(str(p), -1) for p in probe_ids], dtype=np.int64)
    own_score = np.where(own >= 0, per_id[np.arange(s.shape[0]), np.maximum(own, 0)], -np.inf)
    counted = np.isfinite(own_score)  # the probe's identity has a compared reference
    if not counted.any():
        return None
    rows = per_id[counted]
    others = rows.copy()
    others[np.arange(rows.shape[0]), own[counted]] = -np.inf
    return float(np.mean(own_score[counted] > others.max(axis=1)))


def failure_rate(failures: int, attempts: int) -> float | None:
    """``failures / attempts`` as a fraction (FTA, FTE); ``None`` when nothing was
    attempted (no data, not 0)."""
    if failures < 0 or attempts < 0 or failures > attempts:
        raise MetricsInputError(f"bad counts: {failures} failures of {attempts} attempts")
    return failures / attempts if attempts else None
