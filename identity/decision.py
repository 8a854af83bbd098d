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

Subject-level scores (:class:`SubjectRule`, :func:`group_by_subject`): a gallery subject
with T templates gets one score per probe, fused from its T template scores (the max,
the mean of the k best, or the k-th best: order-statistic fusion of multiple samples,
Kittler et al., "On combining classifiers", IEEE TPAMI 1998; Ross, Nandakumar & Jain,
*Handbook of Multibiometrics*, 2006, ch. 4). The FPIR model then counts subject
comparisons instead of template comparisons: fit the tail of the *subject-level*
impostor scores and call :func:`fpir` / :func:`threshold_for_fpir` with
``templates_per_subject = 1``. This assumes the N subject comparisons of a non-mated
probe are independent (different persons); the T templates of one subject need not
be, which the template-level ``N T FMR`` model does assume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from identity import params

F64 = npt.NDArray[np.float64]
RuleKind = Literal["max", "mean_top", "kth"]


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


def gallery_threshold(floor: float, target_fpir: float, subjects: int) -> float:
    """Decision threshold (matcher score) for a gallery of ``subjects`` enrolled persons.

    The score at which the estimated FPIR of a gallery of that size is ``target_fpir``
    (:func:`threshold_for_fpir` with one comparison per subject, on the subject-level
    tail ``params.SUBJECT_FMR_TAIL_*``: a subject scores its best template), and never
    below ``floor`` (the configured threshold, which rules small galleries). The score is
    the service's fused CompCode + OrdinalCode subject score. With the Tongji tuning fit
    and FPIR 0.3 %: ``floor`` (0.25) up to about 19,000 subjects, 0.264 at 10^5, 0.283
    at 1M, 0.302 at 10^7. Raises ValueError unless 0 < target_fpir < 1.
    """
    if not 0.0 < target_fpir < 1.0:
        raise ValueError("target_fpir must lie in (0, 1)")
    if subjects < 1:
        return floor
    grown = threshold_for_fpir(target_fpir, subjects, 1, params.SUBJECT_FMR_TAIL_SLOPE,
                               params.SUBJECT_FMR_TAIL_INTERCEPT)
    return max(floor, grown)


@dataclass(frozen=True)
class SubjectRule:
    """How a subject's template scores become one subject score (order-statistic fusion).

    ``kind``: ``"max"`` (the best template; ``k`` must be 1), ``"mean_top"`` (the mean of
    the ``k`` best templates) or ``"kth"`` (the ``k``-th best template). Sources: the
    max / mean / order-statistic rules of Kittler et al., IEEE TPAMI 1998, applied to
    multiple samples of one trait (Ross, Nandakumar & Jain, *Handbook of
    Multibiometrics*, 2006, ch. 4). Raises ValueError on another kind, ``k < 1``, or
    ``kind == "max"`` with ``k != 1``.
    """

    kind: RuleKind = "max"
    k: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("max", "mean_top", "kth"):
            raise ValueError(f"unknown subject rule {self.kind!r}")
        if self.k < 1 or (self.kind == "max" and self.k != 1):
            raise ValueError("k must be >= 1 (and 1 for the max rule)")

    @property
    def name(self) -> str:
        """``max``, ``mean_top<k>`` or ``kth<k>``."""
        return "max" if self.kind == "max" else f"{self.kind}{self.k}"

    def fuse(self, template_scores: npt.ArrayLike) -> F64:
        """Subject scores from template scores: (..., T) -> (...) float64.

        ``template_scores``: matcher scores in [0, 1] (higher = same palm) of each
        subject's T templates on the last axis; NaN marks a missing template (a subject
        with fewer than T). A missing template counts as score 0.0, the lowest score:
        every rule is non-decreasing in each template score, so a subject with fewer
        templates never gets a higher subject score than it would with T, and its
        impostor tail is no heavier than the one fitted on subjects with T templates
        (conservative for FPIR; with fewer than ``k`` templates ``"kth"`` gives 0).
        Raises ValueError when T < k or the array is 0-dimensional.
        """
        a = np.asarray(template_scores, dtype=np.float64)
        if a.ndim < 1 or a.shape[-1] < self.k:
            raise ValueError(f"need at least k = {self.k} templates on the last axis")
        a = np.where(np.isnan(a), 0.0, a)
        if self.kind == "max":
            return np.asarray(a.max(axis=-1), dtype=np.float64)
        top = -np.partition(-a, self.k - 1, axis=-1)[..., : self.k]  # the k best, any order
        if self.kind == "mean_top":
            return np.asarray(top.mean(axis=-1), dtype=np.float64)
        return np.asarray(top.min(axis=-1), dtype=np.float64)


def group_by_subject(scores: npt.ArrayLike, subject_of_column: Sequence[str]
                     ) -> tuple[F64, list[str]]:
    """Arrange a probe x template score matrix by subject, for :meth:`SubjectRule.fuse`.

    ``scores``: (P, M) scores; ``subject_of_column``: the subject id of each of the M
    template columns. Returns ``(grouped, subjects)``: ``grouped`` is (P, S, T) float64
    with the S subjects in sorted order and T the most templates of any subject (a
    subject's columns in their given order, NaN after its last template), and
    ``subjects`` those S ids. Raises ValueError on a length mismatch or M = 0.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(subject_of_column) or a.shape[1] == 0:
        raise ValueError("need a (P, M) score matrix with one subject id per column, M >= 1")
    subjects, column_subject = np.unique(np.asarray(subject_of_column, dtype=str),
                                         return_inverse=True)
    order = np.argsort(column_subject, kind="stable")
    counts = np.bincount(column_subject, minlength=len(subjects))
    slot = np.arange(a.shape[1]) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((a.shape[0], len(subjects), int(counts.max())), np.nan)
    out[:, column_subject[order], slot] = a[:, order]
    return out, [str(s) for s in subjects]
