"""SqlTemplateRepository.of_subjects (the fused second stage reads a candidate's stored
templates with it) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from identity.repository import TemplateRecord
from storefront.bootstrap import Container, bootstrap
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from storefront.templates_repo import SqlTemplateRepository


@pytest.fixture
def container(tmp_path: Path, database: str | None) -> Iterator[Container]:
    c = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    yield c
    c.engine.dispose()  # not close(): its snapshot would try to decrypt the fake blobs


def test_of_subjects_returns_every_template_of_the_asked_subjects(container: Container) -> None:
    repo = SqlTemplateRepository(container.db)
    s1, s2, s3 = (container.shoppers.register(display_name=n, payment_token=f"tok_{n}").id
                  for n in ("one", "two", "three"))
    now = datetime.now(UTC)
    repo.add([TemplateRecord("t2", s1, b"\x01", now), TemplateRecord("t1", s1, b"\x02", now),
              TemplateRecord("t3", s2, b"\x03", now), TemplateRecord("t4", s3, b"\x04", now)])
    got = repo.of_subjects([s2, s1, s2, "nobody"])
    assert sorted((r.subject_id, r.template_id, r.ciphertext) for r in got) == sorted([
        (s1, "t1", b"\x02"), (s1, "t2", b"\x01"), (s2, "t3", b"\x03")])
    assert all(r.created_at.tzinfo is not None for r in got)
    assert repo.of_subjects([]) == []
    repo.delete_subject(s1)
    assert [r.template_id for r in repo.of_subjects([s1, s2])] == ["t3"]
