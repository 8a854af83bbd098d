"""Cohort score normalisation: the index's cohort, the offset of a search, the decision."""

from __future__ import annotations

import numpy as np
import pytest

from identity import params
from identity.decision import gallery_threshold, normalised_threshold
from identity.imageio import encode_png
from identity.index import Candidate, Cohort, PalmIndex, SearchResult
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository
from identity.service import IdentityService, decide, template_from_image
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms
from identity.template import Template

GRID = (32, 32)


def _random(seed: int) -> Template:
    rng = np.random.default_rng(seed)
    return Template.from_bits(rng.random((3, *GRID)) < 0.5, np.ones(GRID, dtype=bool))


def _index(subjects: int, cohort_from: int, cohort_size: int = 5) -> PalmIndex:
    idx = PalmIndex(GRID, cohort_from=cohort_from, cohort_size=cohort_size)
    for s in range(subjects):
        idx.add(f"t-{s}", f"s-{s}", _random(s))
    return idx


def test_cohort_is_the_least_hashes_and_survives_any_order() -> None:
    ids = [f"person-{i}" for i in range(200)]
    a, b = Cohort(7), Cohort(7)
    for sid in ids:
        a.offer(sid)
    for sid in reversed(ids):
        b.offer(sid)
    rebuilt = Cohort(7)
    rebuilt.rebuild(ids)
    assert a.members() == b.members() == rebuilt.members()
    assert len(a.members()) == 7 and len(set(a.members())) == 7


def test_a_member_that_leaves_is_replaced() -> None:
    idx = _index(40, cohort_from=10)
    before = idx.search_detail(_random(0), 5).cohort
    leaving = before[0][0]
    assert idx.remove_subject(leaving) == 1
    after = idx.search_detail(_random(0), 5).cohort
    assert leaving not in {sid for sid, _ in after}
    assert len(after) == len(before) == 6  # cohort_size + 1: one may be excluded


def test_no_cohort_below_cohort_from() -> None:
    small = _index(9, cohort_from=10)
    result = small.search_detail(_random(3), 5)
    assert result.cohort == () and result.cohort_offset("s-3") is None
    assert len(_index(10, cohort_from=10).search_detail(_random(3), 5).cohort) == 6


def test_offset_is_the_mean_of_the_best_cohort_scores_without_the_subject() -> None:
    cohort = tuple((f"c{i}", s) for i, s in enumerate([0.9, 0.1, 0.2, 0.3, 0.4, 0.5]))
    result = SearchResult([], 3, 3, False, None, cohort)
    # size 5 of the 6 members; excluding c0 (0.9) leaves 0.1..0.5, the best 2: 0.4, 0.5
    assert result.cohort_offset("c0", size=5, top_k=2) == pytest.approx(0.45)
    # not excluded: the first 5 members (0.9, 0.1, 0.2, 0.3, 0.4), the best 2
    assert result.cohort_offset(None, size=5, top_k=2) == pytest.approx(0.65)
    assert result.cohort_offset("c0", size=5, top_k=6) is None


def test_cohort_scores_come_from_the_matcher() -> None:
    idx = _index(30, cohort_from=10)
    probe = _random(1000)
    scores = dict(idx.search_detail(probe, 5).cohort)
    # random codes against random codes: impostor scores, near 0 for CompCode bits
    assert all(0.0 <= s < 0.2 for s in scores.values())
    member = next(iter(scores))
    mated = idx.search_detail(_random(int(member.split("-")[1])), 5)
    assert dict(mated.cohort)[member] == pytest.approx(1.0)
    offset = mated.cohort_offset(member, size=5, top_k=3)
    assert offset is not None and offset < 0.2  # its own score of 1.0 is left out


def test_decide_with_a_cohort_offset() -> None:
    settings = IdentitySettings()
    best = [Candidate("s-1", "t-1", 0.40), Candidate("s-2", "t-2", 0.20)]
    t_norm = normalised_threshold(settings.target_fpir, 10**6)
    # offset low: 0.40 - 0.10 clears the normalised threshold
    outcome, subject, *_ = decide(best, settings, 0.28, normalised=(0.40 - t_norm - 0.01, t_norm))
    assert (outcome, subject) == ("identified", "s-1")
    # a probe that scores high against everyone: same raw score, not identified
    outcome, subject, _, _, why = decide(best, settings, 0.28,
                                         normalised=(0.40 - t_norm + 0.01, t_norm))
    assert (outcome, subject) == ("not_identified", None) and "cohort offset" in why
    # the raw floor still holds
    assert decide([Candidate("s-1", "t-1", 0.27)], settings, 0.28,
                  normalised=(0.0, t_norm))[0] == "not_identified"


def test_normalised_threshold_grows_with_the_gallery() -> None:
    t = [normalised_threshold(params.TARGET_FPIR, n) for n in (10**4, 10**5, 10**6)]
    assert t[0] < t[1] < t[2]
    with pytest.raises(ValueError):
        normalised_threshold(0.0, 10)
    with pytest.raises(ValueError):
        normalised_threshold(0.003, 0)


def test_cohort_rule_starts_before_the_raw_threshold_rises() -> None:
    # below COHORT_FROM_SUBJECTS the raw rule alone decides: its threshold must still be
    # the configured floor there (FPIR held by the floor)
    floor = params.IDENTIFY_THRESHOLD
    assert gallery_threshold(floor, params.TARGET_FPIR, params.COHORT_FROM_SUBJECTS) == floor


def test_settings_refuse_a_cohort_start_below_the_cohort_size() -> None:
    with pytest.raises(ValueError):
        IdentitySettings(cohort_from_subjects=params.COHORT_SIZE)


def test_service_decides_on_normalised_scores_in_a_large_gallery() -> None:
    palms = SyntheticPalms(seed=11)
    settings = IdentitySettings(cohort_from_subjects=params.COHORT_SIZE + 1)
    svc = IdentityService(repository=InMemoryTemplateRepository(),
                          cipher=TemplateCipher(bytes(range(32)), "test"), settings=settings)
    for palm in range(params.COHORT_SIZE + 2):
        svc.enrol(subject_id=f"p{palm}",
                  images=[encode_png(palms.capture(palm, c)) for c in range(2)])
    probe = encode_png(palms.capture(3, 9))
    detail = svc._index.search_detail(  # the search identify runs, to see its cohort
        template_from_image(probe), settings.shortlist_size)
    assert len(detail.cohort) == params.COHORT_SIZE + 1
    result = svc.identify(image=probe)
    assert (result.outcome, result.subject_id) == ("identified", "p3"), result.reason
    stranger = svc.identify(image=encode_png(palms.capture(500, 0)))
    assert stranger.outcome == "not_identified"

