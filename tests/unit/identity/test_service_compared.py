"""IdentityService reports whose stored templates a 1:N search decrypted and compared
(``compared_subjects``), so the storefront can audit every biometric access."""

from __future__ import annotations

import pytest

from identity.errors import EnrolmentError
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.service import IdentityService
from tests.unit.identity.test_service_rescore import _png, _service


@pytest.fixture(scope="module")
def gallery() -> tuple[IdentityService, InMemoryTemplateRepository]:
    repo = InMemoryTemplateRepository()
    svc = _service(repo, rescore_subjects=3)
    for palm in range(5):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    return svc, repo


def test_identification_lists_every_subject_of_the_second_stage(
    gallery: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    svc, _ = gallery
    result = svc.identify(image=_png(2, 9))
    assert result.outcome == "identified" and result.subject_id == "p2"
    assert "p2" in result.compared_subjects
    assert len(result.compared_subjects) == 3  # rescore_subjects: the 3 best subjects
    assert list(result.compared_subjects) == sorted(result.compared_subjects)
    assert set(result.compared_subjects) <= {f"p{i}" for i in range(5)}


def test_an_empty_gallery_compares_nobody() -> None:
    result = _service(InMemoryTemplateRepository()).identify(image=_png(0, 1))
    assert result.outcome == "not_identified" and result.compared_subjects == ()


def test_a_subject_whose_templates_cannot_be_decrypted_is_not_listed() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="a", images=[_png(3, c) for c in range(2)])
    svc.enrol(subject_id="b", images=[_png(4, c) for c in range(2)])
    damaged = InMemoryTemplateRepository()
    for r in repo.all():
        blob = r.ciphertext if r.subject_id == "b" else r.ciphertext[:-1] + bytes(
            [r.ciphertext[-1] ^ 1])
        damaged.add([TemplateRecord(r.template_id, r.subject_id, blob, r.created_at)])
    svc._repository = damaged
    assert svc.identify(image=_png(3, 7)).compared_subjects == ("b",)


def test_enrolment_lists_the_other_subjects_its_duplicate_check_compared() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2)])
    svc.enrol(subject_id="b", images=[_png(1, c) for c in range(2)])
    result = svc.enrol(subject_id="c", images=[_png(2, c) for c in range(2)])
    assert result.compared_subjects == ("a", "b")
    more = svc.enrol(subject_id="a", images=[_png(5, c) for c in range(2)])
    assert "a" not in more.compared_subjects  # the enrolling person is not "another"


def test_a_duplicate_refusal_carries_the_compared_subjects() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2)])
    with pytest.raises(EnrolmentError, match="another account") as refused:
        svc.enrol(subject_id="z", images=[_png(0, c) for c in range(2, 4)])
    assert refused.value.compared_subjects == ("a",)


def test_a_refusal_before_the_duplicate_check_compared_nobody() -> None:
    svc = _service(InMemoryTemplateRepository(), min_enrolment_captures=3)
    with pytest.raises(EnrolmentError) as refused:
        svc.enrol(subject_id="a", images=[_png(0, 0)])
    assert refused.value.compared_subjects == ()


def test_a_duplicate_refusal_names_the_subject_whose_palm_matched() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2)])
    svc.enrol(subject_id="b", images=[_png(1, c) for c in range(2)])
    with pytest.raises(EnrolmentError, match="another account") as refused:
        svc.enrol(subject_id="z", images=[_png(0, c) for c in range(2, 4)])
    assert refused.value.duplicate
    assert refused.value.matched_subjects == ("a",)
    assert set(refused.value.compared_subjects) == {"a", "b"}


def test_a_refusal_as_already_on_this_account_is_marked_a_duplicate() -> None:
    """Only the person's own templates were compared (no other person): the refusal still
    says the duplicate check ran, so the caller audits it."""
    svc = _service(InMemoryTemplateRepository())
    svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2)])
    with pytest.raises(EnrolmentError, match="on this account") as refused:
        svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2, 4)], add_to_own=False)
    assert refused.value.duplicate
    assert refused.value.compared_subjects == () and refused.value.matched_subjects == ()


def test_a_refusal_before_the_duplicate_check_is_not_a_duplicate() -> None:
    svc = _service(InMemoryTemplateRepository(), min_enrolment_captures=3)
    with pytest.raises(EnrolmentError) as refused:
        svc.enrol(subject_id="a", images=[_png(0, 0)])
    assert not refused.value.duplicate
