"""Threshold from a target FPIR and the gallery size."""

from __future__ import annotations

import numpy as np
import pytest

from identity import params
from identity.decision import (
    SubjectRule,
    fit_fmr_tail,
    fpir,
    gallery_threshold,
    group_by_subject,
    threshold_for_fpir,
)
from identity.index import EarlyAccept


def test_fit_recovers_an_exponential_tail() -> None:
    rng = np.random.default_rng(4)
    scores = rng.exponential(0.02, 2_000_000)  # FMR(t) = exp(-t / 0.02)
    slope, intercept = fit_fmr_tail(scores)
    assert slope == pytest.approx(-1.0 / (0.02 * np.log(10)), rel=0.05)
    assert intercept == pytest.approx(0.0, abs=0.2)


def test_threshold_grows_with_the_gallery_and_meets_the_target() -> None:
    s, b = params.FMR_TAIL_SLOPE, params.FMR_TAIL_INTERCEPT
    small = threshold_for_fpir(0.003, 1000, 10, s, b)
    large = threshold_for_fpir(0.003, 1_000_000, 10, s, b)
    assert small < large
    assert fpir(large, 1_000_000, 10, s, b) == pytest.approx(0.003, rel=1e-6)
    assert fpir(large + 0.01, 1_000_000, 10, s, b) < 0.003


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        threshold_for_fpir(0.0, 10, 1, -40.0, 5.0)
    with pytest.raises(ValueError):
        threshold_for_fpir(0.01, 10, 1, 1.0, 5.0)
    with pytest.raises(ValueError):
        fit_fmr_tail([0.1, 0.2])


def test_subject_rules_fuse_the_best_templates() -> None:
    scores = np.array([[0.30, 0.10, 0.25, np.nan],   # subject with 3 templates
                       [0.05, 0.40, 0.20, 0.35]])
    assert SubjectRule().fuse(scores).tolist() == pytest.approx([0.30, 0.40])
    assert SubjectRule("mean_top", 2).fuse(scores).tolist() == pytest.approx([0.275, 0.375])
    assert SubjectRule("kth", 3).fuse(scores).tolist() == pytest.approx([0.10, 0.20])
    # A missing template counts as 0: with fewer than k templates the k-th best is 0.
    assert SubjectRule("kth", 4).fuse(scores).tolist() == pytest.approx([0.0, 0.05])
    assert SubjectRule("mean_top", 4).fuse(scores)[0] == pytest.approx(0.65 / 4)
    assert SubjectRule("mean_top", 3).name == "mean_top3"
    assert SubjectRule().name == "max"


def test_fused_scores_never_exceed_the_max_and_fall_with_k() -> None:
    scores = np.random.default_rng(7).random((50, 20, 10))
    best = SubjectRule().fuse(scores)
    assert best.shape == (50, 20)
    previous = best
    for k in (2, 3, 5, 10):
        mean_k, kth = SubjectRule("mean_top", k).fuse(scores), SubjectRule("kth", k).fuse(scores)
        assert np.all(mean_k <= previous + 1e-12) and np.all(kth <= mean_k + 1e-12)
        previous = mean_k
    assert np.allclose(SubjectRule("kth", 10).fuse(scores), scores.min(axis=-1))
    assert np.allclose(SubjectRule("mean_top", 10).fuse(scores), scores.mean(axis=-1))


def test_subject_rules_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SubjectRule("max", 2)
    with pytest.raises(ValueError):
        SubjectRule("kth", 0)
    with pytest.raises(ValueError):
        SubjectRule("median", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SubjectRule("mean_top", 3).fuse(np.zeros((4, 2)))


def test_group_by_subject_pads_short_subjects() -> None:
    scores = np.array([[0.1, 0.2, 0.3, 0.4, 0.5],
                       [0.6, 0.7, 0.8, 0.9, 1.0]])
    grouped, subjects = group_by_subject(scores, ["b", "a", "b", "c", "a"])
    assert subjects == ["a", "b", "c"]
    assert grouped.shape == (2, 3, 2)
    assert grouped[0, 0].tolist() == [0.2, 0.5]  # a's columns in their order
    assert grouped[1, 1].tolist() == [0.6, 0.8]
    assert grouped[0, 2, 0] == 0.4 and np.isnan(grouped[0, 2, 1])
    assert SubjectRule("mean_top", 2).fuse(grouped)[0].tolist() == pytest.approx(
        [0.35, 0.2, 0.2])
    with pytest.raises(ValueError):
        group_by_subject(scores, ["a", "b"])


def test_subject_level_tail_gives_the_threshold_with_one_comparison_per_subject() -> None:
    # FPIR over N subjects of a subject-level tail is the template formula with T = 1.
    slope, intercept = -40.0, 4.0
    t = threshold_for_fpir(0.003, 1_000_000, 1, slope, intercept)
    assert 1_000_000 * 10.0 ** (slope * t + intercept) == pytest.approx(0.003, rel=2e-3)
    assert t < threshold_for_fpir(0.003, 1_000_000, 10, slope, intercept)


def test_gallery_threshold_rises_with_the_gallery_from_the_floor() -> None:
    """Small galleries keep the configured floor; large ones get the FPIR threshold, which
    grows with N and holds the target FPIR on the subject-level tail."""
    floor = params.IDENTIFY_THRESHOLD
    assert gallery_threshold(floor, 0.003, 0) == floor
    assert gallery_threshold(floor, 0.003, 200) == floor
    grown = [gallery_threshold(floor, 0.003, n) for n in (10**5, 10**6, 10**7)]
    assert floor < grown[0] < grown[1] < grown[2]
    # The fused subject tail of the Tongji tuning palms (identity/params.py).
    assert grown == pytest.approx([0.2640, 0.2832, 0.3024], abs=5e-4)
    estimated = fpir(grown[1], 10**6, 1, params.SUBJECT_FMR_TAIL_SLOPE,
                     params.SUBJECT_FMR_TAIL_INTERCEPT)
    assert estimated == pytest.approx(0.003, rel=1e-6)
    assert gallery_threshold(0.40, 0.003, 10**6) == 0.40  # a higher floor wins


@pytest.mark.parametrize("templates_per_subject", [1, 3, 10])
def test_early_accept_never_stops_below_the_decision_threshold(
    templates_per_subject: int,
) -> None:
    """The index's early-accept score for N x T templates is at least the decision
    threshold for N subjects, at every gallery size: an early stop is always a decision
    the exhaustive search would also reach (identity.index.EarlyAccept)."""
    rule = EarlyAccept()
    for subjects in np.unique(np.logspace(0, 8, 60).astype(np.int64)).tolist():
        decision = gallery_threshold(params.IDENTIFY_THRESHOLD, params.TARGET_FPIR, subjects)
        assert rule.score(subjects * templates_per_subject) >= decision
