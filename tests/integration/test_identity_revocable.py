"""Revocable palm-index codes in the live system: enrolment and identification with the
transform on (flat and pooled first stage), the snapshot, and key rotation through the
service and through ``storefront identity rotate-transform`` over a SQLite store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from identity import params
from identity.errors import KeyFileError
from identity.imageio import encode_png
from identity.index import pool_codes
from identity.matcher import PreparedProbe, ReferenceSet
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.revocable import (
    KeyFileTransform,
    RevocableTransform,
    prepare_next_key,
    promote_next_key,
)
from identity.service import IdentityService, template_from_image
from identity.settings import IdentitySettings
from identity.snapshot import SNAPSHOT_INFO, SnapshotError, SnapshotRows, read_snapshot
from identity.synthetic import SyntheticPalms
from identity.template import Template

PALMS = SyntheticPalms(seed=23)
KEK = bytes(range(32))
CIPHER = TemplateCipher(KEK, "k1")
GRID = (params.FEATURE_GRID_SIZE, params.FEATURE_GRID_SIZE)


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


class CountingRepository(InMemoryTemplateRepository):
    """Counts full scans (a restart from a usable snapshot needs none)."""

    def __init__(self) -> None:
        super().__init__()
        self.full_scans = 0

    def all(self) -> Iterator[TemplateRecord]:
        self.full_scans += 1
        return super().all()


def _service(repo: InMemoryTemplateRepository, folder: Path,
             coarse_from: int = params.INDEX_COARSE_FROM) -> IdentityService:
    return IdentityService(repository=repo, cipher=CIPHER,
                           settings=IdentitySettings(index_coarse_from=coarse_from),
                           snapshot_path=folder / "index.snapshot",
                           transform=KeyFileTransform(folder / "revocable.key", development=True))


def _snapshot(folder: Path, transform_id: str | None = None) -> SnapshotRows:
    rows, _ = read_snapshot(folder / "index.snapshot", key=CIPHER.derive_key(SNAPSHOT_INFO),
                            key_id="k1", transform_id=transform_id)
    return rows


def _rotate(folder: Path) -> RevocableTransform:
    new = prepare_next_key(folder / "revocable.key")
    promote_next_key(folder / "revocable.key")
    return new


def _refs(rows: SnapshotRows) -> ReferenceSet:
    return ReferenceSet.from_templates([Template(GRID, c.tobytes(), m.tobytes())
                                        for c, m in zip(rows.codes, rows.masks, strict=True)])


@pytest.mark.parametrize("coarse_from", [params.INDEX_COARSE_FROM, 4])
def test_enrol_and_identify_with_protected_codes(tmp_path: Path, coarse_from: int) -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo, tmp_path, coarse_from)
    svc.load()
    for palm in range(6):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    for palm in range(6):
        result = svc.identify(image=_png(palm, 9))
        assert result.outcome == "identified" and result.subject_id == f"p{palm}", result.reason
    assert svc.identify(image=_png(40, 0)).outcome == "not_identified"
    svc.save_snapshot()
    rows = _snapshot(tmp_path, svc.transform_id)
    key = RevocableTransform((tmp_path / "revocable.key").read_bytes())
    assert rows.transform_id == key.key_id and rows.pooled is not None
    clear = {r.template_id: Template.from_bytes(CIPHER.decrypt(r.subject_id, r.ciphertext))
             for r in repo.all()}
    codes = np.stack([np.frombuffer(clear[t].reference_code, np.uint8)
                      for t in rows.template_ids])
    pooled = pool_codes(codes, GRID, params.INDEX_COARSE_POOL)
    assert np.array_equal(rows.codes, key.codes(codes))  # what the index holds: transformed
    assert np.array_equal(rows.pooled, key.pooled(pooled, 8 * pooled.shape[1]))
    assert not (rows.codes == codes).all(axis=1).any()
    assert not (rows.pooled == pooled).all(axis=1).any()


def test_rotation_re_derives_the_index_and_revokes_old_codes(tmp_path: Path) -> None:
    repo = InMemoryTemplateRepository()
    svc = _service(repo, tmp_path)
    svc.load()
    for palm in range(4):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    svc.save_snapshot()
    old = RevocableTransform((tmp_path / "revocable.key").read_bytes())
    old_rows = _snapshot(tmp_path, old.key_id)
    new = _rotate(tmp_path)
    assert svc.identify(image=_png(2, 9)).subject_id == "p2"  # the running service follows
    assert svc.transform_id == new.key_id != old.key_id
    probe = template_from_image(_png(2, 9))
    genuine = old_rows.subject_ids.index("p2")
    assert PreparedProbe(probe, transform=old.bits).scores(_refs(old_rows))[genuine] >= (
        params.IDENTIFY_THRESHOLD)
    cross = PreparedProbe(probe, transform=new.bits).scores(_refs(old_rows))
    assert cross.max() < params.IDENTIFY_THRESHOLD  # a leaked old code matches nothing now
    svc.save_snapshot()
    assert _snapshot(tmp_path).transform_id == new.key_id


def test_snapshot_of_a_revoked_key_is_rebuilt(tmp_path: Path) -> None:
    repo = CountingRepository()
    svc = _service(repo, tmp_path)
    svc.load()
    for palm in range(3):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    svc.save_snapshot()
    old_id = svc.transform_id
    new = _rotate(tmp_path)
    repo.full_scans = 0
    restarted = _service(repo, tmp_path)
    assert restarted.load() == 6
    assert repo.full_scans == 1  # the old key's snapshot was refused
    with pytest.raises(SnapshotError, match="revocable key"):
        _snapshot(tmp_path, old_id)
    assert _snapshot(tmp_path, new.key_id).template_ids  # the rebuild wrote a fresh one
    again = _service(repo, tmp_path)
    assert again.load() == 6 and repo.full_scans == 1
    assert again.identify(image=_png(1, 8)).subject_id == "p1"


def test_rotate_transform_command_over_sqlite(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from storefront.bootstrap import bootstrap
    from storefront.cli import app
    from storefront.settings import Settings

    for name in ("DATABASE_URL", "KEY_FILE", "REVOCABLE_KEY_FILE", "ENVIRONMENT"):
        monkeypatch.delenv(f"STOREFRONT_{name}", raising=False)
    settings = Settings(data_dir=tmp_path)
    running = bootstrap(settings)
    shoppers = [running.shoppers.register(display_name=f"S{i}", payment_token=f"tok_{i}")
                for i in range(3)]
    for i, shopper in enumerate(shoppers):
        running.shoppers.enrol_palm(shopper_id=shopper.id, images=[_png(i, c) for c in range(2)],
                                    consent_text_version="2026-11")
    key_file = tmp_path / "keys" / "revocable.key"
    old_id = RevocableTransform(key_file.read_bytes()).key_id
    assert running.identity.transform_id == old_id
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["identity", "rotate-transform"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "6/6" in output and "6 index code(s) re-derived" in output
    new_id = RevocableTransform(key_file.read_bytes()).key_id
    assert new_id != old_id and f"revoked; current key {new_id}" in output
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not key_file.with_name("revocable.key.next").exists()
    header = (tmp_path / "index" / "palm-index.snapshot").read_bytes()[:96]
    assert new_id.encode() in header and old_id.encode() not in header
    found = running.identity.identify(image=_png(1, 9))  # the running worker follows
    assert found.subject_id == shoppers[1].id and running.identity.transform_id == new_id
    running.close()
    restarted = bootstrap(settings)
    assert restarted.identity.transform_id == new_id
    assert restarted.identity.identify(image=_png(2, 9)).subject_id == shoppers[2].id
    restarted.close()


def test_production_refuses_a_missing_revocable_key(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from storefront.bootstrap import bootstrap
    from storefront.settings import Settings

    for name in ("DATABASE_URL", "KEY_FILE", "REVOCABLE_KEY_FILE"):
        monkeypatch.delenv(f"STOREFRONT_{name}", raising=False)
    kek = tmp_path / "keys" / "kek.key"
    kek.parent.mkdir(parents=True)
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    with pytest.raises(KeyFileError, match="revocable.key"):
        bootstrap(Settings(data_dir=tmp_path, environment="production"))
    assert not (tmp_path / "keys" / "revocable.key").exists()
