"""PalmIndex staged search: query stages, the early-accept score, early vs full answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from identity import params
from identity.decision import fpir
from identity.index import DEFAULT_EARLY_ACCEPT, EarlyAccept, PalmIndex, query_stages
from identity.service import decide
from identity.settings import IdentitySettings
from identity.template import Template

GRID = (32, 32)


def _smooth(seed: int) -> Template:
    """A random code with 4x4-cell blobs (palm codes are spatially correlated)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, 8, 8)) < 0.5
    return Template.from_bits(coarse.repeat(4, axis=1).repeat(4, axis=2), np.ones(GRID, bool))


def _noisy_bits(t: Template, seed: int, flip: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return t.code_bits() ^ (rng.random((3, *GRID)) < flip)


def _probe(t: Template, seed: int, flip: float) -> Template:
    """A 3-variant probe (as the feature pipeline makes): every variant a noisy copy."""
    codes = np.stack([_noisy_bits(t, seed + v, flip) for v in range(3)])
    return Template.from_bits(codes, np.ones((3, *GRID), bool))


def _index(refs: list[Template], early_accept: EarlyAccept | None = DEFAULT_EARLY_ACCEPT,
           coarse_from: int = 100) -> PalmIndex:
    idx = PalmIndex(GRID, coarse_from=coarse_from, early_accept=early_accept)
    codes = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in refs])
    masks = np.stack([np.frombuffer(t.mask[:128], np.uint8) for t in refs])
    # two templates per subject, as a person enrols several captures
    idx.add_packed([f"t-{i}" for i in range(len(refs))], [f"s-{i // 2}" for i in range(len(refs))],
                   codes, masks)
    return idx


@pytest.fixture(scope="module")
def refs() -> list[Template]:
    return [_smooth(s) for s in range(400)]


def test_query_stages_grow_from_the_unshifted_probe() -> None:
    stages = query_stages(3, (-2, 0, 2))
    assert [len(s) for s in stages] == [1, 8, 18]
    assert stages[0] == [(0, 0, 0)]
    assert {q[0] for q in stages[1]} == {0} and (0, 0, 0) not in stages[1]
    assert {q[0] for q in stages[2]} == {1, 2}
    assert len({q for s in stages for q in s}) == 27  # each query once
    assert [len(s) for s in query_stages(1, (-2, 0, 2))] == [1, 8]
    assert query_stages(1, (0,)) == [[(0, 0, 0)]]
    with pytest.raises(ValueError):
        query_stages(0)


def test_early_accept_score_follows_the_fmr_tail() -> None:
    rule = EarlyAccept()
    for n in (10**4, 10**5, 10**6, 10**7):
        t = rule.score(n)
        # n impostor templates: n * FMR(t - margin) is the allowed risk, to rounding
        fmr = 10.0 ** (params.FMR_TAIL_SLOPE * (t - params.AMBIGUITY_MARGIN)
                       + params.FMR_TAIL_INTERCEPT)
        assert n * fmr == pytest.approx(params.EARLY_ACCEPT_RISK, rel=1e-9)
        assert fpir(t - params.AMBIGUITY_MARGIN, n, 1, params.FMR_TAIL_SLOPE,
                    params.FMR_TAIL_INTERCEPT) <= params.EARLY_ACCEPT_RISK
    assert rule.score(10**6) == pytest.approx(0.370, abs=5e-4)
    assert rule.score(10**7) > rule.score(10**6) > rule.score(10**5)
    # small galleries: never below the identification threshold
    assert rule.score(1) == params.IDENTIFY_THRESHOLD
    assert params.IDENTIFY_THRESHOLD <= rule.score(100) < rule.score(10**4)
    assert EarlyAccept(threshold=0.5).score(10**6) == 0.5
    wider = EarlyAccept(margin=0.05).score(10**6)
    assert math.isclose(wider - rule.score(10**6), 0.03, abs_tol=1e-12)
    for bad in ({"risk": 0.0}, {"risk": 1.0}, {"slope": 1.0}, {"margin": -0.1},
                {"threshold": 1.5}):
        with pytest.raises(ValueError):
            EarlyAccept(**bad)


@pytest.mark.parametrize("coarse_from", [100, 10_000])  # pooled and full-code first stage
def test_early_answer_has_the_full_answers_top_subject_and_decision(
    refs: list[Template], coarse_from: int
) -> None:
    idx = _index(refs, coarse_from=coarse_from)
    assert idx.coarse == (coarse_from == 100)
    settings = IdentitySettings()
    stopped = 0
    for i in range(0, 400, 20):
        probe = _probe(refs[i], 1000 + i, flip=0.1)
        quick = idx.search_detail(probe, shortlist=10)
        full = idx.search_detail(probe, shortlist=10, early_accept=False)
        assert full.stages == full.stages_planned == 3 and not full.early_accepted
        assert quick.accept_score == pytest.approx(EarlyAccept().score(400))
        assert quick.candidates[0].subject_id == full.candidates[0].subject_id == f"s-{i // 2}"
        assert decide(quick.candidates, settings)[:2] == decide(full.candidates, settings)[:2]
        # the early answer never over-states a score: it saw a subset of the rows
        full_scores = {c.subject_id: c.score for c in full.candidates}
        assert all(c.score <= full_scores[c.subject_id] + 1e-12 for c in quick.candidates)
        stopped += quick.early_accepted
        if quick.early_accepted:
            assert quick.stages < quick.stages_planned
            assert quick.candidates[0].score >= quick.accept_score
    assert stopped == 20  # scores ~0.8, far above the small gallery's early-accept score


def test_probe_below_the_early_accept_score_runs_every_stage(refs: list[Template]) -> None:
    strict = EarlyAccept(threshold=0.9)  # early-accept score 0.9: only near-copies stop early
    idx = _index(refs, early_accept=strict)
    weak = _probe(refs[64], 7, flip=0.15)  # scores ~0.7: found, but below 0.9
    result = idx.search_detail(weak, shortlist=10)
    assert not result.early_accepted and result.stages == 3 and result.accept_score == 0.9
    assert result.candidates[0].subject_id == "s-32" and result.candidates[0].score < 0.9
    assert result.candidates == idx.search(weak, shortlist=10, early_accept=False)
    assert result.candidates == _index(refs, early_accept=None).search(weak, shortlist=10)
    close = _probe(refs[64], 7, flip=0.02)  # scores ~0.96: stops after the first stage
    early = idx.search_detail(close, shortlist=10)
    assert early.early_accepted and early.stages == 1
    assert early.candidates[0].subject_id == "s-32"


def test_index_without_early_accept_runs_every_stage(refs: list[Template]) -> None:
    idx = _index(refs, early_accept=None)
    assert idx.early_accept is None
    result = idx.search_detail(_probe(refs[10], 3, flip=0.05), shortlist=10)
    assert not result.early_accepted and result.stages == 3 and result.accept_score is None
    assert result.candidates[0].subject_id == "s-5"


def test_rotation_stage_finds_a_probe_whose_variant_0_is_off(refs: list[Template]) -> None:
    """Variant 0 unrelated to the palm (as a rotated capture's unrotated code), variant 1
    a noisy copy: only the rotation stage brings the palm into the shortlist."""
    idx = _index(refs)
    other = np.random.default_rng(5).random((3, *GRID)) < 0.5
    codes = np.stack([other, _noisy_bits(refs[122], 9, 0.1), other])
    probe = Template.from_bits(codes, np.ones((3, *GRID), bool))
    result = idx.search_detail(probe, shortlist=10)
    assert result.stages == 3
    assert result.candidates[0].subject_id == "s-61" and result.candidates[0].score > 0.6
    one_variant = Template.from_bits(other, np.ones(GRID, bool))
    assert all(c.subject_id != "s-61" or c.score < 0.3
               for c in idx.search(one_variant, shortlist=10))


def test_empty_index_gives_an_empty_result() -> None:
    result = PalmIndex(GRID).search_detail(_smooth(1), shortlist=5)
    assert result.candidates == [] and result.stages == 0 and not result.early_accepted


@pytest.mark.parametrize("target_fpir", [1e-9, 1e-6, 1e-4, 3e-3, 0.1])
def test_early_accept_score_is_never_below_the_gallery_decision_threshold(
    target_fpir: float,
) -> None:
    """Whatever target FPIR the decision is configured with, a search never stops on a
    score the service's decision (gallery_threshold) would refuse."""
    from identity.decision import gallery_threshold

    rule = EarlyAccept(target_fpir=target_fpir)
    for subjects in (1, 10, 100, 1_000, 10_000, 10**6, 10**7):
        for per_subject in (1, 10):
            decision = gallery_threshold(params.IDENTIFY_THRESHOLD, target_fpir, subjects)
            assert rule.score(subjects * per_subject, subjects) >= decision
    with pytest.raises(ValueError):
        EarlyAccept(target_fpir=0.0)


def test_a_subject_removed_between_stages_is_not_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lock is released between stages: a subject deleted by another thread after
    stage 1 scored its template must not come back from that search."""
    import identity.index as index_module

    refs = [_smooth(s) for s in range(5)]
    idx = _index(refs, early_accept=None)
    original, calls = index_module._query_codes, [0]

    def delete_before_stage_two(probe: Template, queries: list[tuple[int, int, int]]) -> object:
        calls[0] += 1
        if calls[0] == 2:
            assert idx.remove_subject("s-0") == 2  # two templates per subject
        return original(probe, queries)

    monkeypatch.setattr(index_module, "_query_codes", delete_before_stage_two)
    found = idx.search_detail(_probe(refs[0], 77, 0.05), 50)
    assert calls[0] >= 2 and found.stages >= 2
    assert all(c.subject_id != "s-0" for c in found.candidates)
    assert found.candidates  # the other subjects are still there
