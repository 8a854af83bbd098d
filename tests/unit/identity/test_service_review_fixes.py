"""Regression tests of defects a review found in the fused second stage (f39d07e, 6a4a30f):
a retired (v2) stored template broke other shoppers' identification, rescore_subjects=1
switched the ambiguity rule off, and the second stage's work was unbounded. Synthetic palms
and the in-memory repository only."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from identity.errors import EnrolmentError
from identity.imageio import encode_png
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.service import IdentityService, template_from_image
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=11)
KEK = bytes(range(32))


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


class _CountingCipher(TemplateCipher):
    def __init__(self) -> None:
        super().__init__(KEK, "test")
        self.decrypts = 0

    def decrypt(self, subject_id: str, blob: bytes) -> bytes:
        self.decrypts += 1
        return super().decrypt(subject_id, blob)


def _service(repo: InMemoryTemplateRepository, cipher: TemplateCipher | None = None,
             **settings: int) -> IdentityService:
    return IdentityService(repository=repo, cipher=cipher or TemplateCipher(KEK, "test"),
                           settings=IdentitySettings(**settings))


def test_a_legacy_v2_record_of_one_candidate_does_not_break_everyone_elses_identification(
) -> None:
    """A stored template still in format v2 (enrolled before f39d07e) decrypts fine and is
    refused by Template.from_bytes (RetiredTemplateError). It used to make identify()
    raise for every probe whose best subjects included that person (an index snapshot
    written before v3 still holds its CompCode row), and load() refuse to start. Now that
    person is left out (logged; not identified until they enrol again), and the others
    are identified; a rebuild from the repository skips the retired row."""
    repo = InMemoryTemplateRepository()
    cipher = TemplateCipher(KEK, "test")
    svc = _service(repo, cipher)
    svc.enrol(subject_id="a", images=[_png(0, c) for c in range(2)])
    svc.enrol(subject_id="b", images=[_png(1, c) for c in range(2)])
    old = template_from_image(_png(2, 0))
    v2 = struct.pack(">4sBBBHHII", b"SFPT", 2, 3, old.variants, *old.grid, len(old.code),
                     len(old.mask)) + old.code + old.mask  # the v2 layout (template.py)
    repo.add([TemplateRecord("legacy", "old", cipher.encrypt("old", v2), datetime.now(UTC))])
    svc._index.add("legacy", "old", old)  # as an index snapshot written before v3 holds it
    svc._cursor = repo.head()
    result = svc.identify(image=_png(1, 7))
    assert result.outcome == "identified" and result.subject_id == "b"
    assert "old" not in [c.subject_id for c in svc._search(old)]
    fresh = _service(repo, cipher)
    assert fresh.load() == 4  # a's and b's templates; the retired row is skipped
    assert fresh.identify(image=_png(1, 7)).subject_id == "b"
    assert fresh.identify(image=_png(2, 3)).outcome == "not_identified"


def test_rescore_subjects_1_still_detects_two_subjects_with_the_same_palm() -> None:
    """With rescore_subjects=1 the second stage returned one candidate, so decide() never
    saw a runner-up and the same palm under two accounts was "identified". The setting
    now needs at least 2 and the default keeps the ambiguity rule working."""
    repo = InMemoryTemplateRepository()
    cipher = TemplateCipher(KEK, "test")
    svc = _service(repo, cipher)
    svc.enrol(subject_id="a", images=[_png(3, c) for c in range(3)])
    for r in list(repo.all()):  # the same palm under a second account (e.g. a past race)
        plain = cipher.decrypt("a", r.ciphertext)
        repo.add([TemplateRecord("b" + r.template_id, "b", cipher.encrypt("b", plain),
                                 r.created_at)])
    default = _service(repo, cipher)
    default.load()
    assert default.identify(image=_png(3, 8)).outcome == "ambiguous"
    with pytest.raises(ValidationError):
        IdentitySettings(rescore_subjects=1)
    two = _service(repo, cipher, rescore_subjects=2)
    two.load()
    assert two.identify(image=_png(3, 8)).outcome == "ambiguous"


def test_second_stage_work_per_identification_is_bounded() -> None:
    """Stage 2 decrypted every stored template of each of the best subjects, and nothing
    capped a subject's templates (one with 600 made every search decrypt ~600 blobs). Now
    at most max_templates_per_subject are read per subject (the index's best template
    first), and enrolment refuses to go beyond that many."""
    repo = InMemoryTemplateRepository()
    cipher = _CountingCipher()
    svc = _service(repo, cipher)
    for palm in range(4):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    plain = template_from_image(_png(1, 1)).to_bytes()
    now = datetime.now(UTC)
    repo.add([TemplateRecord(uuid.uuid4().hex, "p1", cipher.encrypt("p1", plain), now)
              for _ in range(300)])
    svc.refresh()
    cipher.decrypts = 0
    svc._search(template_from_image(_png(2, 9)))
    settings = IdentitySettings()
    assert cipher.decrypts <= settings.max_templates_per_subject + 3 * 2, cipher.decrypts
    assert svc.identify(image=_png(1, 9)).subject_id == "p1"  # its best template is read


def test_enrolment_beyond_the_templates_per_subject_limit_is_refused() -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo, max_templates_per_subject=4)
    svc.enrol(subject_id="s", images=[_png(5, c) for c in range(3)])
    with pytest.raises(EnrolmentError, match="limit of 4"):
        svc.enrol(subject_id="s", images=[_png(5, c) for c in range(3, 5)])
    assert len(repo.of_subjects(["s"])) == 3  # nothing stored by the refused enrolment
    svc.enrol(subject_id="s", images=[_png(5, 6)])
    assert len(repo.of_subjects(["s"])) == 4

