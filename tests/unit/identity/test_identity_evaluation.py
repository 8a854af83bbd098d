"""Metrics (ISO/IEC 19795-1) against pyeer and hand-computed cases; golden palms;
perturbation floors; template format v2 round trip and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from pyeer.eer_info import get_eer_stats

from identity import evaluation as ev
from identity.errors import TemplateFormatError
from identity.features import extract_features
from identity.matcher import match_score
from identity.synthetic import SyntheticPalms
from identity.template import MAGIC, Template


def _lists(seed: int, n_gen: int = 400, n_imp: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 0.12, n_gen), rng.normal(0.2, 0.08, n_imp)


def _brute_fnmr_at(gen: np.ndarray, imp: np.ndarray, target: float) -> float:
    best = 1.0
    for t in np.concatenate([gen, imp, [np.inf]]):
        if np.mean(imp >= t) <= target:
            best = min(best, float(np.mean(gen < t)))
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eer_within_pyeer_bounds_and_fnmr_equals_pyeer(seed: int) -> None:
    gen, imp = _lists(seed)
    stats = get_eer_stats(gen, imp)
    eer = ev.equal_error_rate(gen, imp)
    # pyeer interpolates between the steps; the two may differ by one step of each rate
    step = 1 / len(gen) + 1 / len(imp)
    assert stats.eer_low - step <= eer <= stats.eer_high + step
    assert eer == pytest.approx(stats.eer, abs=step)
    assert ev.fnmr_at_fmr(gen, imp, 1e-3) == pytest.approx(stats.fmr1000, abs=1e-12)
    assert ev.fnmr_at_fmr(gen, imp, 1e-2) == pytest.approx(stats.fmr100, abs=1e-12)


@pytest.mark.parametrize("seed", [4, 5])
def test_fnmr_at_fmr_equals_brute_force(seed: int) -> None:
    gen, imp = _lists(seed, 150, 1500)
    for target in (1e-3, 1e-2, 0.05):
        assert ev.fnmr_at_fmr(gen, imp, target) == pytest.approx(_brute_fnmr_at(gen, imp, target))


def test_hand_computed_case() -> None:
    gen = [0.9, 0.8, 0.7, 0.3]
    imp = [0.1, 0.2, 0.75, 0.4]
    # threshold 0.7: FNMR 1/4 (0.3), FMR 1/4 (0.75) -> EER 0.25
    assert ev.equal_error_rate(gen, imp) == 0.25
    curve = ev.det_curve(gen, imp)
    k = int(np.flatnonzero(curve.thresholds == 0.7)[0])
    assert (curve.fmr[k], curve.fnmr[k]) == (0.25, 0.25)
    assert curve.fmr[-1] == 0.0 and curve.fnmr[-1] == 1.0
    assert curve.fmr[0] == 1.0 and curve.fnmr[0] == 0.0


def test_separated_scores_have_zero_eer() -> None:
    gen, imp = np.linspace(0.6, 1.0, 50), np.linspace(0.0, 0.5, 2000)
    assert ev.equal_error_rate(gen, imp) == 0.0
    assert ev.fnmr_at_fmr(gen, imp, 1e-3) == 0.0
    assert ev.score_at_fmr(imp, 1e-3) is not None


def test_all_equal_scores() -> None:
    assert ev.equal_error_rate([0.5] * 10, [0.5] * 10) == 0.5
    assert ev.fnmr_at_fmr([0.5] * 10, [0.5] * 1000, 1e-3) == 1.0


def test_too_few_impostors_give_none() -> None:
    gen, imp = _lists(6, 50, 999)
    assert ev.fnmr_at_fmr(gen, imp, 1e-3) is None
    assert ev.score_at_fmr(imp, 1e-3) is None
    assert ev.fnmr_at_fmr(gen, imp[:1000], 1e-4) is None
    assert ev.min_impostors_for(1e-5) == 100_000


def test_no_impostors_or_bad_input_refused() -> None:
    with pytest.raises(ev.MetricsInputError):
        ev.equal_error_rate([0.5, 0.6], [])
    with pytest.raises(ev.MetricsInputError):
        ev.det_curve([np.nan], [0.1])
    with pytest.raises(ev.MetricsInputError):
        ev.failure_rate(3, 2)
    assert ev.failure_rate(0, 0) is None  # nothing attempted: no data, not a 0 % rate
    assert ev.failure_rate(0, 3) == 0.0
    assert ev.failure_rate(1, 4) == 0.25


def test_score_at_fmr_lets_at_most_the_allowed_impostors_through() -> None:
    _, imp = _lists(7, 10, 20_000)
    t = ev.score_at_fmr(imp, 1e-3)
    assert t is not None
    assert np.sum(imp >= t) <= 20
    assert np.sum(imp >= np.nextafter(np.sort(imp)[-21], -np.inf)) > 20


def test_rank1_hand_computed_and_ties() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.5, 0.5, 0.1], [0.4, 0.1, 0.2]])
    refs = ["a", "b", "c"]
    # probe 0 right, probe 1 wrong (c beats b), probe 2 tie a/b = miss, probe 3 "z" not enrolled
    assert ev.rank1_rate(scores, ["a", "b", "a", "z"], refs) == pytest.approx(1 / 3)
    assert ev.rank1_rate(scores[:1], ["z"], refs) is None
    with pytest.raises(ev.MetricsInputError):
        ev.rank1_rate(scores, ["a"], refs)


def test_rank1_takes_best_template_per_identity() -> None:
    scores = np.array([[0.2, 0.7, 0.6]])
    assert ev.rank1_rate(scores, ["b"], ["b", "a", "b"]) == 0.0
    assert ev.rank1_rate(scores, ["a"], ["b", "a", "b"]) == 1.0


def test_rank1_leave_one_out_counts_only_probes_with_another_own_capture() -> None:
    inf = -np.inf
    # one capture: compared with nothing (its own pair is left out), nothing to rank
    assert ev.rank1_rate(np.array([[inf]]), ["a"], ["a"]) is None
    # two identities with one capture each: impostor scores only, still nothing to rank
    assert ev.rank1_rate(np.array([[inf, 0.3], [0.3, inf]]), ["a", "b"], ["a", "b"]) is None
    # a, a, b: both a captures find each other first; b has no other capture, not counted
    scores = np.array([[inf, 0.8, 0.2], [0.8, inf, 0.9], [0.2, 0.9, inf]])
    ids = ["a", "a", "b"]
    assert ev.rank1_rate(scores, ids, ids) == pytest.approx(1 / 2)  # the second a loses to b


def test_rank1_refuses_nan_and_positive_infinity() -> None:
    for bad in (np.nan, np.inf):
        with pytest.raises(ev.MetricsInputError):
            ev.rank1_rate(np.array([[bad, 0.1]]), ["a"], ["a", "b"])


# --- golden palms and perturbations (synthetic generator, fixed seeds) -------------

PALMS = SyntheticPalms(seed=11)


def _template(palm: int, capture: int) -> Template:
    return extract_features(PALMS.capture(palm, capture)).to_template()


def test_golden_probe_matches_its_palm_and_not_another() -> None:
    probe = _template(0, 0)
    assert match_score(probe, _template(0, 1)) >= 0.45
    assert match_score(probe, _template(1, 0)) <= 0.2
    assert match_score(probe, probe) == 1.0


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_seeded_perturbations_keep_a_score_floor(seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    roi = PALMS.capture(2, 0)
    reference = extract_features(roi).to_template()
    angle, gain = rng.uniform(-4.0, 4.0), rng.uniform(0.8, 1.2)
    m = cv2.getRotationMatrix2D((63.5, 63.5), angle, 1.0)
    m[:, 2] += rng.uniform(-4.0, 4.0, 2)
    moved = cv2.warpAffine(roi, m, (128, 128), borderMode=cv2.BORDER_REFLECT).astype(float)
    noisy = np.clip(moved * gain + rng.normal(0.0, 4.0, moved.shape), 0, 255).astype(np.uint8)
    probe = extract_features(noisy).to_template()
    assert match_score(probe, reference) >= 0.35
    assert match_score(probe, _template(3, 0)) <= 0.2


# --- template format version 3 -------------------------------------------------------

def test_real_template_round_trips() -> None:
    t = _template(4, 1)
    assert t.variants == 18  # 3 rotations x (the cell grid + 3 half-cell + 2 sheared grids)
    back = Template.from_bytes(t.to_bytes())
    assert back == t.rotations_only() and back.variants == 3  # bytes hold the rotations
    for v in range(3):
        assert np.array_equal(back.code_bits(v), t.code_bits(v))
        assert np.array_equal(back.mask_bits(v), t.mask_bits(v))


def test_version_1_bytes_are_refused_clearly() -> None:
    import struct

    v1 = struct.pack(">4sBBHHII", MAGIC, 1, 3, 32, 32, 384, 128) + bytes(512)
    with pytest.raises(TemplateFormatError, match="version 1"):
        Template.from_bytes(v1)


@pytest.mark.parametrize("seed", range(5))
def test_corrupted_or_foreign_bytes_are_refused(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = bytearray(_template(5, 0).to_bytes())
    foreign = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    with pytest.raises(TemplateFormatError):
        Template.from_bytes(foreign)
    data[6] = 4  # claims 4 variants: lengths no longer fit
    with pytest.raises(TemplateFormatError):
        Template.from_bytes(bytes(data))
    with pytest.raises(TemplateFormatError):
        Template.from_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    with pytest.raises(TemplateFormatError, match="magic"):
        Template.from_bytes(png)
