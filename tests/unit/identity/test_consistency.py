"""An enrolment's captures must show one palm: different palms are refused."""

from __future__ import annotations

import pytest

from identity.consistency import same_palm_group
from identity.errors import EnrolmentError
from identity.imageio import encode_png
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository
from identity.service import IdentityService, template_from_image
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=11)


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _service() -> IdentityService:
    return IdentityService(repository=InMemoryTemplateRepository(),
                           cipher=TemplateCipher(bytes(range(32)), "test"),
                           settings=IdentitySettings())


def test_captures_of_one_palm_form_one_group() -> None:
    templates = [template_from_image(_png(1, c)) for c in range(4)]
    assert same_palm_group(templates, 0.28) == [0, 1, 2, 3]
    assert same_palm_group(templates[:1], 0.28) == [0] and same_palm_group([], 0.28) == []


def test_a_capture_of_another_palm_is_left_out() -> None:
    templates = [template_from_image(_png(p, c)) for p, c in ((1, 0), (2, 0), (1, 1), (1, 2))]
    assert same_palm_group(templates, 0.28) == [0, 2, 3]
    with pytest.raises(ValueError):
        same_palm_group(templates, 1.5)


def test_enrolment_refuses_the_odd_capture_and_keeps_the_palm() -> None:
    svc = _service()
    done = svc.enrol(subject_id="a", images=[_png(3, 0), _png(4, 0), _png(3, 1), _png(3, 2)])
    assert [o.accepted for o in done.captures] == [True, False, True, True]
    assert done.captures[1].reason.startswith("different_palm")
    assert len(done.template_ids) == 3
    assert svc.identify(image=_png(4, 5)).subject_id is None  # palm 4 was not enrolled


def test_captures_of_three_palms_are_refused_whole() -> None:
    svc = _service()
    with pytest.raises(EnrolmentError, match="do not show one palm"):
        svc.enrol(subject_id="a", images=[_png(5, 0), _png(6, 0), _png(7, 0)])
    with pytest.raises(EnrolmentError, match="do not show one palm"):  # no majority
        svc.enrol(subject_id="a", images=[_png(5, 0), _png(5, 1), _png(6, 0), _png(6, 1)])
    assert svc.identify(image=_png(5, 5)).subject_id is None  # nothing was stored


def test_min_captures_counts_usable_ones() -> None:
    svc = _service()
    with pytest.raises(EnrolmentError, match="1 usable capture"):
        svc.enrol(subject_id="a", images=[_png(8, 0), b"not an image", b"\x89PNG"],
                  min_captures=3)
