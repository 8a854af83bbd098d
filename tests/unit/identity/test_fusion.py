"""Score-level fusion: z-normalisation on impostors, sum and max rules, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from identity import evaluation as ev
from identity.fusion import (
    FusionInputError,
    ZNorm,
    fit_normalisers,
    fit_znorm,
    fuse,
    max_rule,
    normalise_all,
    sum_rule,
)


def test_znorm_is_fitted_on_impostor_mean_and_population_std() -> None:
    norm = fit_znorm([0.1, 0.2, 0.3, 0.4])
    assert norm.mean == pytest.approx(0.25)
    assert norm.std == pytest.approx(math.sqrt(0.0125))
    z = norm.apply([0.25, 0.25 + math.sqrt(0.0125), 0.0])
    np.testing.assert_allclose(z, [0.0, 1.0, -0.25 / math.sqrt(0.0125)])
    assert z.dtype == np.float64


def test_normalised_training_impostors_have_zero_mean_unit_std() -> None:
    impostors = np.random.default_rng(1).normal(0.2, 0.03, 500)
    z = fit_znorm(impostors).apply(impostors)
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z.std() == pytest.approx(1.0)


def test_sum_and_max_rules_on_known_values() -> None:
    a, b = [1.0, -2.0, 0.5], [3.0, 1.0, -0.5]
    np.testing.assert_array_equal(sum_rule([a, b]), [4.0, -1.0, 0.0])
    np.testing.assert_array_equal(max_rule([a, b]), [3.0, 1.0, 0.5])
    np.testing.assert_array_equal(sum_rule([a, b, [1.0, 1.0, 1.0]]), [5.0, 0.0, 1.0])
    np.testing.assert_array_equal(max_rule([a]), a)


def test_fuse_normalises_each_matcher_with_its_own_parameters() -> None:
    norms = [ZNorm(mean=0.2, std=0.1), ZNorm(mean=10.0, std=2.0)]
    green, nir = [0.4, 0.2], [10.0, 16.0]  # z: [2, 0] and [0, 3]
    np.testing.assert_allclose(normalise_all(norms, [green, nir]), [[2.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(fuse(norms, [green, nir], "sum"), [2.0, 3.0])
    np.testing.assert_allclose(fuse(norms, [green, nir], "max"), [2.0, 3.0])
    np.testing.assert_allclose(fuse(norms, [[0.3, 0.1], [12.0, 8.0]], "sum"), [2.0, -2.0])
    np.testing.assert_allclose(fuse(norms, [[0.3, 0.1], [12.0, 8.0]], "max"), [1.0, -1.0])


def test_fit_normalisers_fits_one_per_matcher() -> None:
    norms = fit_normalisers([[0.0, 2.0], [10.0, 14.0]])
    assert norms == [ZNorm(1.0, 1.0), ZNorm(12.0, 2.0)]


def _noisy_matcher(rng: np.random.Generator, n_gen: int, n_imp: int, scale: float,
                   offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a matcher on the same pairs: genuine mean 1 vs impostor 0, unit noise,
    then an affine change of units so the two matchers' raw scales differ."""
    genuine = rng.normal(1.0, 1.0, n_gen) * scale + offset
    impostor = rng.normal(0.0, 1.0, n_imp) * scale + offset
    return genuine, impostor


def test_fusion_of_two_independent_noisy_matchers_separates_better() -> None:
    rng = np.random.default_rng(2026)
    g1, i1 = _noisy_matcher(rng, 4000, 20000, scale=0.05, offset=0.2)
    g2, i2 = _noisy_matcher(rng, 4000, 20000, scale=3.0, offset=-7.0)
    t1, t2 = _noisy_matcher(rng, 10, 2000, 0.05, 0.2)[1], _noisy_matcher(rng, 10, 2000, 3.0,
                                                                          -7.0)[1]
    norms = fit_normalisers([t1, t2])  # training impostors, not the evaluated ones
    single = max(ev.equal_error_rate(g1, i1), ev.equal_error_rate(g2, i2))
    fused_sum = ev.equal_error_rate(fuse(norms, [g1, g2]), fuse(norms, [i1, i2]))
    fused_max = ev.equal_error_rate(fuse(norms, [g1, g2], "max"), fuse(norms, [i1, i2], "max"))
    # d' = 1 per matcher (EER ~ 0.31); the sum of two independent ones has d' = sqrt(2)
    # (EER ~ 0.24). The max rule helps less than the sum on equal Gaussian matchers.
    assert 0.29 < single < 0.33
    assert fused_sum < single - 0.05
    assert fused_sum == pytest.approx(0.24, abs=0.015)
    assert fused_sum < fused_max < single


def test_sum_without_normalisation_would_be_dominated_by_the_wider_matcher() -> None:
    rng = np.random.default_rng(7)
    g1, i1 = _noisy_matcher(rng, 3000, 3000, scale=0.01, offset=0.0)
    g2, i2 = _noisy_matcher(rng, 3000, 3000, scale=100.0, offset=0.0)
    raw = ev.equal_error_rate(sum_rule([g1, g2]), sum_rule([i1, i2]))
    norms = fit_normalisers([i1, i2])
    normalised = ev.equal_error_rate(fuse(norms, [g1, g2]), fuse(norms, [i1, i2]))
    assert raw == pytest.approx(ev.equal_error_rate(g2, i2), abs=0.01)
    assert normalised < raw - 0.04


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: sum_rule([[1.0, 2.0], [1.0]]), "different lengths"),
        (lambda: max_rule([[1.0, 2.0, 3.0], [1.0, 2.0]]), "different lengths"),
        (lambda: fuse([ZNorm(0, 1)], [[1.0], [2.0]]), "1 normalisations for 2"),
        (lambda: sum_rule([]), "no score lists"),
        (lambda: sum_rule([[], []]), "no matcher 0 scores"),
        (lambda: fit_znorm([]), "no impostor scores"),
        (lambda: fit_normalisers([]), "no training impostor"),
        (lambda: fit_znorm([0.1, float("nan"), 0.3]), "NaN or infinite"),
        (lambda: sum_rule([[0.1, 0.2], [0.3, float("nan")]]), "NaN or infinite"),
        (lambda: ZNorm(0.0, 1.0).apply([float("inf")]), "NaN or infinite"),
        (lambda: fit_znorm([0.3, 0.3, 0.3]), "no spread"),
        (lambda: fit_znorm([0.3]), "no spread"),
        (lambda: fit_normalisers([[0.1, 0.2], [5.0, 5.0]]), "matcher 1: impostor scores have"),
        (lambda: fit_znorm([[0.1, 0.2], [0.3, 0.4]]), "must be 1-D"),
        (lambda: fit_znorm(["a", "b"]), "not numbers"),
        (lambda: ZNorm(0.0, 0.0), "std must be finite and > 0"),
        (lambda: ZNorm(float("nan"), 1.0), "mean must be finite"),
        (lambda: fuse([ZNorm(0, 1)], [[1.0]], rule="product"), "unknown fusion rule"),
    ],
)
def test_bad_input_raises_value_error_with_a_reason(call: object, reason: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=reason) as info:
        call()
    assert isinstance(info.value, FusionInputError)
