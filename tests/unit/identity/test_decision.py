"""Threshold from a target FPIR and the gallery size."""

from __future__ import annotations

import numpy as np
import pytest

from identity import params
from identity.decision import fit_fmr_tail, fpir, threshold_for_fpir


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
