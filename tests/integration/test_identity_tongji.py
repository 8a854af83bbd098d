"""Identity on the real Tongji ROIs: enrol session 1, identify session 2, then delete."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository
from identity.service import IdentityService
from identity.settings import IdentitySettings

pytestmark = pytest.mark.realdata

N_PALMS = 30


def _captures(tongji_dir: Path) -> dict[tuple[str, int], list[Path]]:
    by: dict[tuple[str, int], list[Path]] = defaultdict(list)
    with (tongji_dir / "manifest.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            by[(row["identity"], int(row["session"]))].append(tongji_dir / row["path"])
    return {k: sorted(v) for k, v in by.items()}


def test_enrol_session1_identify_session2_then_delete(tongji_dir: Path) -> None:
    captures = _captures(tongji_dir)
    palms = sorted({p for p, _ in captures})[:N_PALMS]
    svc = IdentityService(
        repository=InMemoryTemplateRepository(),
        cipher=TemplateCipher(bytes(32), "test"),
        settings=IdentitySettings(),
    )
    for palm in palms:
        images = [p.read_bytes() for p in captures[(palm, 1)]]
        assert len(svc.enrol(subject_id=palm, images=images).template_ids) == 10
    results = {
        palm: [svc.identify(image=p.read_bytes()) for p in captures[(palm, 2)][:3]]
        for palm in palms
    }
    flat = [(palm, r) for palm, rs in results.items() for r in rs]
    misidentified = [(p, r) for p, r in flat if r.outcome == "identified" and r.subject_id != p]
    assert misidentified == []
    identified = sum(r.subject_id == p for p, r in flat)
    assert identified / len(flat) >= 0.9

    victim = palms[0]
    assert svc.delete(subject_id=victim) == 10
    for path in captures[(victim, 2)][:3]:
        after = svc.identify(image=path.read_bytes())
        assert after.outcome == "not_identified" or after.subject_id != victim
        assert after.subject_id != victim
