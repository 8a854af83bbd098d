"""Two API workers on one database see each other's enrolments and deletions at once.

Each worker's palm index is a cache of the template table; the change log keeps
them in step (a newcomer's review found a palm enrolled through one worker could
be enrolled again, for another account, through the other).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.errors import EnrolmentError
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.settings import Settings

PALMS = SyntheticPalms(31)


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Container, ...]]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "shared", database_url=url)
    first = bootstrap(settings)
    second = bootstrap(settings)  # same database and key file, its own index
    yield first, second
    first.close()
    second.close()


def test_enrolment_on_one_worker_is_identified_on_the_other(
        workers: tuple[Container, Container]) -> None:
    a, b = workers
    bob = a.shoppers.register(display_name="Bob", payment_token="tok_bob")
    a.shoppers.enrol_palm(shopper_id=bob.id, images=[_png(0, c) for c in range(3)],
        consent_text_version="2026-11")
    decision = b.gates.enter_by_palm(image=_png(0, 5))
    assert decision.admitted and decision.shopper_id == bob.id


def test_the_same_palm_cannot_be_enrolled_twice_through_two_workers(
        workers: tuple[Container, Container]) -> None:
    a, b = workers
    bob = a.shoppers.register(display_name="Bob", payment_token="tok_bob")
    a.shoppers.enrol_palm(shopper_id=bob.id, images=[_png(1, c) for c in range(3)],
        consent_text_version="2026-11")
    eve = b.shoppers.register(display_name="Eve", payment_token="tok_eve")
    with pytest.raises(EnrolmentError, match="already enrolled"):
        b.shoppers.enrol_palm(shopper_id=eve.id, images=[_png(1, c) for c in range(3, 6)],
        consent_text_version="2026-11")


def test_deletion_on_one_worker_is_honoured_by_the_other(
        workers: tuple[Container, Container]) -> None:
    a, b = workers
    bob = a.shoppers.register(display_name="Bob", payment_token="tok_bob")
    a.shoppers.enrol_palm(shopper_id=bob.id, images=[_png(2, c) for c in range(3)],
        consent_text_version="2026-11")
    assert b.gates.enter_by_palm(image=_png(2, 5)).admitted
    assert a.identity.delete(subject_id=bob.id) == 3
    decision = b.gates.enter_by_palm(image=_png(2, 6))
    assert not decision.admitted and decision.shopper_id is None
