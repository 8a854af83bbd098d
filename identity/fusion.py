"""Score-level fusion of two or more matchers' scores for the same comparisons (pure numpy).

Each matcher's (here: each spectral band's) scores are first z-score normalised,
``z = (s - mean) / std``, with ``mean`` and ``std`` fitted on the *impostor* scores of a
training split only (the impostor distribution is the one every matcher has plenty of,
and anchoring it puts "how unlike a stranger" on one scale for all matchers; Jain,
Nandakumar & Ross, "Score normalization in multimodal biometric systems", Pattern
Recognition 2005). The normalised scores of one comparison are then combined:

* sum rule: ``z_1 + ... + z_K`` (Kittler, Hatef, Duin & Matas, "On combining
  classifiers", IEEE TPAMI 1998; it is the mean rule up to the factor ``K``, which
  changes no ranking and no error rate);
* max rule: ``max(z_1, ..., z_K)``, for comparison.

Scores are similarities (higher = more alike, as :mod:`identity.matcher` produces) and
so are the fused scores; they are no longer in [0, 1]. Element ``n`` of every input
array must be a score of the same comparison pair.

Every function raises :class:`FusionInputError` (a ``ValueError``) with a reason on
bad input: empty or non 1-D score lists, lists of different lengths, NaN or infinite
values, a non-positive or non-finite normalisation, and impostor scores without
spread (a zero standard deviation cannot scale anything).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

MIN_RELATIVE_STD = 1e-12
"""Impostor standard deviations at or below this x max(1, |mean|) count as zero."""


class FusionInputError(ValueError):
    """Scores or normalisation parameters that cannot be fused; the message says why."""


def _scores(values: npt.ArrayLike, what: str) -> F64:
    """``values`` as a non-empty, finite 1-D float64 array, or FusionInputError."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FusionInputError(f"{what} scores are not numbers: {exc}") from exc
    if a.ndim != 1:
        raise FusionInputError(f"{what} scores must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise FusionInputError(f"no {what} scores")
    if not np.all(np.isfinite(a)):
        raise FusionInputError(f"{what} scores contain NaN or infinite values")
    return a


@dataclass(frozen=True)
class ZNorm:
    """Z-score normalisation ``(s - mean) / std`` of one matcher's scores.

    ``mean``: the impostor mean (score units); ``std``: the impostor standard
    deviation (population, ``ddof=0``; score units, > 0). Build it with
    :func:`fit_znorm`; constructing one with a non-finite mean or a non-positive or
    non-finite std raises :class:`FusionInputError`.
    """

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.mean):
            raise FusionInputError(f"normalisation mean must be finite, got {self.mean}")
        if not (np.isfinite(self.std) and self.std > 0.0):
            raise FusionInputError(f"normalisation std must be finite and > 0, got {self.std}")

    def apply(self, scores: npt.ArrayLike) -> F64:
        """Normalised scores: float64 ``(N,)`` for 1-D ``scores`` ``(N,)``, N >= 1.

        Raises :class:`FusionInputError` when ``scores`` is empty, not 1-D or not finite.
        """
        return (_scores(scores, "normalised") - self.mean) / self.std


def fit_znorm(impostor_scores: npt.ArrayLike) -> ZNorm:
    """Fit a :class:`ZNorm` on one matcher's training impostor scores.

    ``impostor_scores``: 1-D float scores ``(N,)`` of impostor comparisons of the
    training split (never of the split being evaluated). Raises
    :class:`FusionInputError` when they are empty, not 1-D, not finite, or have no
    spread (standard deviation <= ``MIN_RELATIVE_STD`` x max(1, |mean|), e.g. a single
    score or all scores equal).
    """
    i = _scores(impostor_scores, "impostor")
    mean, std = float(i.mean()), float(i.std())
    if std <= MIN_RELATIVE_STD * max(1.0, abs(mean)):
        raise FusionInputError(
            f"impostor scores have no spread (std {std:g} over {i.size} scores): "
            "z-score normalisation needs at least two different impostor scores"
        )
    return ZNorm(mean, std)


def _stack(score_lists: Sequence[npt.ArrayLike]) -> F64:
    """Stack K >= 1 equally long score lists into a float64 ``(K, N)`` array."""
    if len(score_lists) == 0:
        raise FusionInputError("no score lists to fuse")
    arrays = [_scores(s, f"matcher {k}") for k, s in enumerate(score_lists)]
    lengths = sorted({a.size for a in arrays})
    if len(lengths) > 1:
        raise FusionInputError(
            f"score lists have different lengths {[a.size for a in arrays]}: element n of "
            "each must be a score of the same comparison"
        )
    return np.stack(arrays)


def sum_rule(normalised: Sequence[npt.ArrayLike]) -> F64:
    """Sum rule (Kittler et al. 1998): ``out[n] = sum_k normalised[k][n]``.

    ``normalised``: K >= 1 already normalised 1-D score lists, each ``(N,)``, N >= 1,
    element ``n`` of each for the same comparison. Returns float64 ``(N,)``. Raises
    :class:`FusionInputError` on no lists, empty, non 1-D, non-finite or unequal lists.
    """
    return np.asarray(_stack(normalised).sum(axis=0), dtype=np.float64)


def max_rule(normalised: Sequence[npt.ArrayLike]) -> F64:
    """Max rule: ``out[n] = max_k normalised[k][n]``.

    Same input, output and errors as :func:`sum_rule`.
    """
    return np.asarray(_stack(normalised).max(axis=0), dtype=np.float64)


def fit_normalisers(training_impostors: Sequence[npt.ArrayLike]) -> list[ZNorm]:
    """One :class:`ZNorm` per matcher, each fitted on that matcher's training impostors.

    Raises :class:`FusionInputError` as :func:`fit_znorm` does (the message names the
    matcher by its position) or when no list is given.
    """
    if len(training_impostors) == 0:
        raise FusionInputError("no training impostor score lists")
    norms = []
    for k, impostors in enumerate(training_impostors):
        try:
            norms.append(fit_znorm(impostors))
        except FusionInputError as exc:
            raise FusionInputError(f"matcher {k}: {exc}") from exc
    return norms


def normalise_all(norms: Sequence[ZNorm], score_lists: Sequence[npt.ArrayLike]) -> list[F64]:
    """Apply ``norms[k]`` to ``score_lists[k]``; float64 ``(N,)`` lists.

    Raises :class:`FusionInputError` when the two sequences differ in length or a
    score list is empty, not 1-D or not finite. (Unequal list lengths are caught by
    the rules.)
    """
    if len(norms) != len(score_lists):
        raise FusionInputError(
            f"{len(norms)} normalisations for {len(score_lists)} score lists"
        )
    return [norm.apply(scores) for norm, scores in zip(norms, score_lists, strict=True)]


def fuse(
    norms: Sequence[ZNorm], score_lists: Sequence[npt.ArrayLike], rule: str = "sum"
) -> F64:
    """Normalise each matcher's scores with its :class:`ZNorm` and combine them.

    ``rule``: ``"sum"`` (:func:`sum_rule`) or ``"max"`` (:func:`max_rule`).
    ``score_lists``: K 1-D lists ``(N,)`` aligned by comparison. Returns float64
    ``(N,)``. Raises :class:`FusionInputError` on an unknown rule or as
    :func:`normalise_all` and the rules do.
    """
    rules = {"sum": sum_rule, "max": max_rule}
    if rule not in rules:
        raise FusionInputError(f"unknown fusion rule {rule!r} (use 'sum' or 'max')")
    return rules[rule](normalise_all(norms, score_lists))
