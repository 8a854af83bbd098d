"""An export racing a palm deletion, consent withdrawal or account deletion stores nothing
readable (SQLite and PostgreSQL).

The race is forced at the seam between collecting the data and the final write
(``ExportService._sealed``): the deletion runs there, in the building thread or in another
thread while the build waits; afterwards no archive is stored, the job says why, no data
key row was created, and the request never fails with a 500-style error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.db.models import PrivacyExport, SubjectKey
from storefront.errors import Gone, NotFound
from storefront.payments import SimulatedProcessor
from storefront.privacy.export import DELETED_WHILE_BUILDING
from storefront.privacy.wiring import Privacy, build_privacy
from storefront.settings import Settings
from storefront.templates_repo import SqlTemplateRepository
from tests.integration.test_privacy_archives import _shopper

World = tuple[Container, Privacy]


@pytest.fixture
def world(database: str | None, tmp_path: Path) -> Iterator[World]:
    def clock() -> datetime:
        return datetime.now(UTC)

    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database), clock=clock,
                  processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    yield c, build_privacy(c, clock=clock)
    c.close()


def _keys(c: Container, sid: str) -> int:
    with c.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(SubjectKey)
                             .where(SubjectKey.subject_id == sid)) or 0)


def _jobs(c: Container, sid: str) -> list[PrivacyExport]:
    with c.db() as db:
        return list(db.scalars(sa.select(PrivacyExport)
                               .where(PrivacyExport.shopper_id == sid)).all())


def _after_collecting(p: Privacy, action: Callable[[], Any]) -> None:
    """Run ``action`` once, in the building thread, after the archive was built and sealed
    and before the final write."""
    exports: Any = p.exports
    original, done = exports._sealed, []  # noqa: SLF001 - the seam the race goes through

    def sealed(job_id: str, shopper_id: str) -> dict[str, Any]:
        values = original(job_id, shopper_id)
        if not done:
            done.append(True)
            action()
        return values

    exports._sealed = sealed


def _palm_id(p: Privacy, sid: str) -> str:
    (palm,) = p.portal.palms(sid)
    return palm.id


@pytest.mark.parametrize("deletion", ["one palm", "all palms", "withdrawal"])
def test_a_build_overtaken_by_a_palm_deletion_stores_nothing(world: World,
                                                             deletion: str) -> None:
    c, p = world
    sid = _shopper(c, "Ann", palm=1)
    act = {"one palm": lambda: p.deletion.delete_palm(shopper_id=sid,
                                                      palm_id=_palm_id(p, sid)),
           "all palms": lambda: p.deletion.delete_all_palms(shopper_id=sid),
           "withdrawal": lambda: p.consents.withdraw(shopper_id=sid)}[deletion]
    _after_collecting(p, act)
    job = p.exports.request(sid)
    assert job.state == "expired" and job.size_bytes is None
    assert "palm" in (job.error or "") and "request a new export" in (job.error or "")
    (row,) = _jobs(c, sid)
    assert row.archive is None
    assert _keys(c, sid) == 0  # destroyed by the deletion, not made again by the export
    with pytest.raises(Gone):
        p.exports.download(sid, job.id)


def test_a_deletion_the_deletions_do_not_announce_is_caught_by_the_final_check(
        world: World) -> None:
    """Templates removed another way (no export ended) still make the build store nothing:
    the final write compares the shopper's deletion mark with the one at collection."""
    c, p = world
    sid = _shopper(c, "Bob", palm=2)
    repo = SqlTemplateRepository(c.db)
    _after_collecting(p, lambda: repo.delete_templates(
        [r.template_id for r in repo.of_subjects([sid])]))
    job = p.exports.request(sid)
    assert job.state == "failed" and job.error == DELETED_WHILE_BUILDING
    assert _jobs(c, sid)[0].archive is None


def test_a_build_overtaken_by_account_deletion_answers_not_found(world: World) -> None:
    c, p = world
    sid = _shopper(c, "Cy", palm=3)
    _after_collecting(p, lambda: p.deletion.delete_account(shopper_id=sid))
    with pytest.raises(NotFound, match="account was deleted while the export was requested"):
        p.exports.request(sid)
    assert _jobs(c, sid) == [] and _keys(c, sid) == 0


def test_account_deleted_before_the_build_starts_answers_not_found(world: World) -> None:
    """The job row is gone when the build starts: the build returns (no stale-row error)
    and the request answers 404 naming the shopper, not the export."""
    c, p = world
    sid = _shopper(c, "Dee")
    exports: Any = p.exports
    original = exports.build

    def build(job_id: str) -> None:
        p.deletion.delete_account(shopper_id=sid)
        original(job_id)

    exports.build = build
    with pytest.raises(NotFound, match=f"shopper '{sid}'"):
        p.exports.request(sid)
    assert _jobs(c, sid) == []


def test_a_pending_export_is_ended_by_a_palm_deletion(world: World) -> None:
    c, p = world
    sid = _shopper(c, "Eve", palm=4)
    queued: list[Callable[[], None]] = []
    exports: Any = p.exports
    exports._start, exports._sync_row_limit = queued.append, 0
    job = p.exports.request(sid)
    assert job.state == "pending"
    assert p.deletion.delete_all_palms(shopper_id=sid).deleted["exports"] == 1
    queued[0]()
    assert p.exports.status(sid, job.id).state == "expired"
    assert _jobs(c, sid)[0].archive is None and _keys(c, sid) == 0


def test_export_and_palm_deletion_in_two_threads(world: World) -> None:
    """The build waits (after collecting) while another thread deletes every palm; the
    deletion answers, then the build's final write stores nothing."""
    c, p = world
    sid = _shopper(c, "Fay", palm=5)
    collected, deleted = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def wait_for_deletion() -> None:
        collected.set()
        assert deleted.wait(30)

    def delete() -> None:
        try:
            assert collected.wait(30)
            p.deletion.delete_all_palms(shopper_id=sid)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            deleted.set()

    _after_collecting(p, wait_for_deletion)
    other = threading.Thread(target=delete)
    other.start()
    job = p.exports.request(sid)
    other.join(30)
    assert errors == []
    assert job.state in ("expired", "failed") and job.size_bytes is None
    assert _jobs(c, sid)[0].archive is None and _keys(c, sid) == 0


def test_export_of_a_shopper_without_palms_makes_no_data_key(world: World) -> None:
    c, p = world
    sid = _shopper(c, "Gus")
    job = p.exports.request(sid)
    assert job.state == "ready" and p.exports.download(sid, job.id)[:2] == b"PK"
    assert _keys(c, sid) == 0
    p.deletion.delete_account(shopper_id=sid)
    assert _jobs(c, sid) == [] and _keys(c, sid) == 0
