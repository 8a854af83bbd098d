"""The fused second stage of IdentityService (index shortlist -> fused re-score of the
best subjects' stored templates), on synthetic palms with the in-memory repository."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from identity.imageio import encode_png
from identity.matcher import match_score
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.service import IdentityService, fused_subject_scores, template_from_image
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms
from identity.template import Template

PALMS = SyntheticPalms(seed=11)
KEK = bytes(range(32))


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _service(repo: InMemoryTemplateRepository, **settings: int) -> IdentityService:
    return IdentityService(repository=repo, cipher=TemplateCipher(KEK, "test"),
                           settings=IdentitySettings(**settings))


@pytest.fixture(scope="module")
def gallery() -> tuple[IdentityService, InMemoryTemplateRepository]:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    for palm in range(5):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(3)])
    return svc, repo


def test_identify_reports_the_fused_score_of_the_best_stored_template(
    gallery: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    svc, repo = gallery
    cipher = TemplateCipher(KEK, "test")
    probe = template_from_image(_png(2, 9))
    stored = repo.of_subjects(["p2"])
    assert len(stored) == 3
    expected = max(match_score(probe, Template.from_bytes(cipher.decrypt(r.subject_id,
                                                                         r.ciphertext)))
                   for r in stored)
    result = svc.identify(image=_png(2, 9))
    assert result.outcome == "identified" and result.subject_id == "p2"
    assert result.score == pytest.approx(expected, abs=1e-12)


def test_a_subject_removed_from_the_repository_is_not_identified_by_a_stale_index() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="gone", images=[_png(0, c) for c in range(2)])
    svc.enrol(subject_id="kept", images=[_png(1, c) for c in range(2)])
    repo.delete_subject("gone")  # another worker deleted it; this index still holds it
    probe = template_from_image(_png(0, 5))
    assert "gone" not in [c.subject_id for c in svc._search(probe)]
    repo_changes = repo.changes_since(0)
    assert "gone" in repo_changes.removed_subjects


def test_a_shredded_subject_is_left_out_and_the_others_still_scored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = InMemoryTemplateRepository()
    cipher = TemplateCipher(KEK, "test")
    svc = IdentityService(repository=repo, cipher=cipher, settings=IdentitySettings())
    svc.enrol(subject_id="a", images=[_png(3, c) for c in range(2)])
    svc.enrol(subject_id="b", images=[_png(4, c) for c in range(2)])
    # Damage a's stored bytes (as a shredded key or a corrupt row would leave them).
    damaged = InMemoryTemplateRepository()
    for r in repo.all():
        blob = r.ciphertext if r.subject_id == "b" else r.ciphertext[:-1] + bytes(
            [r.ciphertext[-1] ^ 1])
        damaged.add([TemplateRecord(r.template_id, r.subject_id, blob, r.created_at)])
    svc._repository = damaged
    with caplog.at_level(logging.WARNING, logger="identity.service"):
        found = svc._search(template_from_image(_png(3, 7)))
    assert [c.subject_id for c in found] == ["b"]
    assert "not usable" in caplog.text


def test_rescore_subjects_limits_the_second_stage(
    gallery: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    _, repo = gallery
    two = _service(repo, rescore_subjects=2)
    two.load()
    found = two._search(template_from_image(_png(1, 8)))
    assert len(found) == 2 and found[0].subject_id == "p1"
    result = two.identify(image=_png(1, 8))
    assert result.outcome == "identified" and result.runner_up_score == found[1].score


def test_fused_subject_scores_takes_each_subjects_best_template() -> None:
    probe = template_from_image(_png(0, 4))
    mine = [template_from_image(_png(0, c)) for c in range(3)]
    other = template_from_image(_png(1, 0))
    now = datetime.now(UTC)
    stored = [(TemplateRecord(f"t{i}", "me", b"x", now), t) for i, t in enumerate(mine)]
    stored.append((TemplateRecord("o", "you", b"x", now), other))
    found = fused_subject_scores(probe, stored)
    assert [c.subject_id for c in found] == ["me", "you"]
    scores = [match_score(probe, t) for t in mine]
    assert found[0].score == pytest.approx(max(scores), abs=1e-12)
    assert found[0].template_id == f"t{scores.index(max(scores))}"
    assert found[1].score == pytest.approx(match_score(probe, other), abs=1e-12)
    assert fused_subject_scores(probe, []) == []


def test_in_memory_repository_lists_templates_of_subjects() -> None:
    repo = InMemoryTemplateRepository()
    now = datetime.now(UTC)
    repo.add([TemplateRecord("t2", "s1", b"a", now), TemplateRecord("t1", "s1", b"b", now),
              TemplateRecord("t3", "s2", b"c", now)])
    assert [r.template_id for r in repo.of_subjects(["s1"])] == ["t1", "t2"]
    assert [r.template_id for r in repo.of_subjects(["s2", "s1", "s2", "nobody"])] == [
        "t3", "t1", "t2"]
    assert repo.of_subjects([]) == []
    repo.delete_subject("s1")
    assert [r.template_id for r in repo.of_subjects(["s1", "s2"])] == ["t3"]
