"""IdentityService end to end on synthetic palms, with the in-memory repository."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from identity.errors import EnrolmentError, InvalidImageError, TemplateDecryptionError
from identity.imageio import encode_png
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository
from identity.service import IdentityService
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=7)
KEK = bytes(range(32))


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _service(repo: InMemoryTemplateRepository | None = None) -> IdentityService:
    return IdentityService(
        repository=repo or InMemoryTemplateRepository(),
        cipher=TemplateCipher(KEK, "test"),
        settings=IdentitySettings(),
    )


@pytest.fixture(scope="module")
def enrolled() -> tuple[IdentityService, InMemoryTemplateRepository]:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    for palm in range(6):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(3)])
    return svc, repo


def test_enrolled_palms_are_identified(
    enrolled: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    svc, _ = enrolled
    for palm in range(6):
        result = svc.identify(image=_png(palm, 10))
        assert result.outcome == "identified", result.reason
        assert result.subject_id == f"p{palm}"
        assert result.score >= IdentitySettings().identify_threshold
        assert result.runner_up_score is not None and result.runner_up_score < result.score
        assert result.elapsed_ms > 0


def test_unknown_palm_is_not_identified(
    enrolled: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    svc, _ = enrolled
    result = svc.identify(image=_png(99, 0))
    assert result.outcome == "not_identified"
    assert result.subject_id is None
    assert "threshold" in result.reason


def test_templates_are_stored_encrypted(
    enrolled: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    _, repo = enrolled
    records = list(repo.all())
    assert len(records) == 18
    cipher = TemplateCipher(KEK, "test")
    for r in records:
        assert b"SFPT" not in r.ciphertext
        assert r.created_at.tzinfo is not None and r.created_at <= datetime.now(r.created_at.tzinfo)
        assert cipher.decrypt(r.subject_id, r.ciphertext).startswith(b"SFPT")
        with pytest.raises(TemplateDecryptionError):
            cipher.decrypt("someone-else", r.ciphertext)


def test_load_rebuilds_the_index_from_the_repository(
    enrolled: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    _, repo = enrolled
    assert _service(repo).load() == 18
    # Without load(), the first identification replays the repository's change log.
    assert _service(repo).identify(image=_png(2, 11)).subject_id == "p2"


def test_enrolment_reports_each_capture() -> None:
    svc = _service()
    enrolment = svc.enrol(subject_id="a", images=[_png(0, 0), b"garbage", _png(0, 1)])
    assert len(enrolment.template_ids) == 2
    outcomes = [(c.index, c.accepted) for c in enrolment.captures]
    assert outcomes == [(0, True), (1, False), (2, True)]
    assert enrolment.captures[1].template_id is None
    assert "invalid_image" in enrolment.captures[1].reason


def test_the_same_capture_sent_twice_counts_once() -> None:
    """Byte-identical files in one enrolment are one capture: the copies are refused
    with the reason, and three copies of one image do not meet a 2-capture minimum."""
    svc = _service()
    one, other = _png(0, 0), _png(0, 1)
    enrolment = svc.enrol(subject_id="a", images=[one, other, one, one])
    assert [(c.index, c.accepted) for c in enrolment.captures] == [
        (0, True), (1, True), (2, False), (3, False)]
    assert enrolment.captures[2].reason.startswith("duplicate_capture: the same file as "
                                                   "capture 0")
    assert len(enrolment.template_ids) == 2
    with pytest.raises(EnrolmentError, match="1 usable capture"):
        _service().enrol(subject_id="b", images=[_png(1, 0)] * 3, min_captures=2)


def test_enrolment_without_usable_capture_refused() -> None:
    svc = _service()
    with pytest.raises(InvalidImageError):
        svc.enrol(subject_id="a", images=[b"garbage", b""])
    blank = encode_png(np.full((128, 128), 128, dtype=np.uint8))
    with pytest.raises(EnrolmentError):
        svc.enrol(subject_id="a", images=[blank])
    with pytest.raises(EnrolmentError):
        svc.enrol(subject_id="a", images=[])


def test_same_palm_cannot_be_enrolled_for_two_subjects() -> None:
    svc = _service()
    svc.enrol(subject_id="a", images=[_png(3, 0), _png(3, 1)])
    with pytest.raises(EnrolmentError, match="already enrolled"):
        svc.enrol(subject_id="b", images=[_png(3, 2)])
    svc.enrol(subject_id="a", images=[_png(3, 3)])  # more captures for the same subject: fine
    with pytest.raises(EnrolmentError, match="already enrolled on this account"):
        svc.enrol(subject_id="a", images=[_png(3, 4)], add_to_own=False)  # a new palm only
    svc.enrol(subject_id="a", images=[_png(6, 0)], add_to_own=False)  # another palm: fine


def test_delete_removes_stored_and_indexed_templates() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo)
    svc.enrol(subject_id="a", images=[_png(4, 0), _png(4, 1)])
    svc.enrol(subject_id="b", images=[_png(5, c) for c in range(3)])
    assert svc.delete(subject_id="a") == 2
    assert svc.delete(subject_id="a") == 0
    assert {r.subject_id for r in repo.all()} == {"b"}
    assert svc.identify(image=_png(4, 5)).outcome == "not_identified"
    assert svc.identify(image=_png(5, 5)).subject_id == "b"


def test_mixed_undecodable_and_unusable_captures_report_every_reason() -> None:
    """One capture not an image, one a blank frame: the refusal names both reasons (an
    EnrolmentError), not "no capture could be decoded"."""
    svc = _service()
    blank = encode_png(np.full((128, 128), 128, dtype=np.uint8))
    with pytest.raises(EnrolmentError) as refused:
        svc.enrol(subject_id="a", images=[b"garbage", blank])
    assert "invalid_image" in refused.value.reason
    assert "0 usable capture(s)" in refused.value.reason


def test_early_accept_follows_the_configured_decision() -> None:
    """The index's early-accept rule uses the service's threshold and margin, not the
    params defaults: otherwise a raised threshold could stop a search below it."""
    svc = IdentityService(
        repository=InMemoryTemplateRepository(),
        cipher=TemplateCipher(KEK, "test"),
        settings=IdentitySettings(identify_threshold=0.33, ambiguity_margin=0.05),
    )
    rule = svc._index.early_accept
    assert rule is not None
    assert (rule.threshold, rule.margin) == (0.33, 0.05)
    assert rule.score(10_000) >= 0.33


def test_stored_templates_keep_only_their_rotations(
    enrolled: tuple[IdentityService, InMemoryTemplateRepository],
) -> None:
    """A fresh capture's half-cell refinement variants serve only as a probe: what is
    stored is the rotations (a stored template is only ever a reference)."""
    from identity.template import Template

    _, repo = enrolled
    cipher = TemplateCipher(KEK, "test")
    records = list(repo.all())
    assert records
    for record in records:
        stored = Template.from_bytes(cipher.decrypt(record.subject_id, record.ciphertext))
        assert stored.variants == 3 and not stored.refined
