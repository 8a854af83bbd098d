"""Index snapshot on disk: restart from it, replay the log, rebuild when unusable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.errors import TemplateDecryptionError
from identity.imageio import encode_png
from identity.protection import TemplateCipher
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.service import IdentityService
from identity.settings import IdentitySettings
from identity.snapshot import SnapshotError, read_snapshot
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=11)
KEK = bytes(range(32))


class CountingRepository(InMemoryTemplateRepository):
    """Counts full scans (a snapshot restart must not need one)."""

    def __init__(self) -> None:
        super().__init__()
        self.full_scans = 0

    def all(self) -> Iterator[TemplateRecord]:
        self.full_scans += 1
        return super().all()


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _service(repo: InMemoryTemplateRepository, path: Path, kek: bytes = KEK) -> IdentityService:
    return IdentityService(repository=repo, cipher=TemplateCipher(kek, "k1"),
                           settings=IdentitySettings(), snapshot_path=path)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[CountingRepository, Path]:
    repo, path = CountingRepository(), tmp_path / "index.snapshot"
    svc = _service(repo, path)
    svc.load()
    for palm in range(4):
        svc.enrol(subject_id=f"p{palm}", images=[_png(palm, c) for c in range(2)])
    svc.save_snapshot()
    repo.full_scans = 0
    return repo, path


def test_restart_from_snapshot_replays_later_changes(
    stored: tuple[CountingRepository, Path],
) -> None:
    repo, path = stored
    writer = IdentityService(repository=repo, cipher=TemplateCipher(KEK, "k1"),
                             settings=IdentitySettings())  # another worker, no snapshot
    writer.enrol(subject_id="p4", images=[_png(4, 0)])
    assert _service(repo, path).load() == 9
    assert repo.full_scans == 0
    restarted = _service(repo, path)
    restarted.load()
    assert restarted.identify(image=_png(4, 7)).subject_id == "p4"
    assert restarted.identify(image=_png(1, 7)).subject_id == "p1"


def test_corrupt_snapshot_is_rebuilt_from_the_database(
    stored: tuple[CountingRepository, Path],
) -> None:
    repo, path = stored
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum"):
        read_snapshot(path, key=TemplateCipher(KEK, "k1").derive_key(b"storefront/index-"
                                                                       b"snapshot/v1"),
                      key_id="k1")
    svc = _service(repo, path)
    assert svc.load() == 8
    assert repo.full_scans == 1
    assert svc.identify(image=_png(2, 7)).subject_id == "p2"
    _service(repo, path).load()  # the rebuild wrote a good snapshot again
    assert repo.full_scans == 1


def test_stale_snapshot_is_rebuilt(stored: tuple[CountingRepository, Path]) -> None:
    _, path = stored
    fresh = CountingRepository()  # another (empty) database: the cursor is ahead of it
    svc = _service(fresh, path)
    assert svc.load() == 0
    assert fresh.full_scans == 1
    assert svc.identify(image=_png(2, 7)).outcome == "not_identified"


def test_deleted_person_is_not_identified_after_restart(
    stored: tuple[CountingRepository, Path],
) -> None:
    repo, path = stored
    svc = _service(repo, path)
    svc.load()
    assert svc.delete(subject_id="p3") == 2
    assert not path.exists()  # the snapshot held the palm: it is gone from disk
    restarted = _service(repo, path)
    restarted.load()
    assert restarted.identify(image=_png(3, 7)).subject_id is None


def test_copied_database_without_the_kek_yields_no_template(
    stored: tuple[CountingRepository, Path],
) -> None:
    repo, path = stored
    thief = _service(repo, path, kek=bytes(32))
    with pytest.raises(TemplateDecryptionError):
        thief.load()  # the snapshot is refused (other key) and no stored blob decrypts


def test_key_file_provider_refuses_placeholders_outside_development(tmp_path: Path) -> None:
    from identity.errors import KeyFileError
    from identity.protection import KeyFileProvider, key_id_for

    placeholder = tmp_path / "kek.key"
    placeholder.write_bytes(b"CHANGE-ME-CHANGE-ME-CHANGE-ME-!!")
    placeholder.chmod(0o600)
    with pytest.raises(KeyFileError, match="placeholder"):
        KeyFileProvider([placeholder], development=False)
    with pytest.raises(KeyFileError, match="does not exist"):
        KeyFileProvider([tmp_path / "missing.key"], development=False)
    current = tmp_path / "new.key"
    provider = KeyFileProvider([current, placeholder], development=True)  # creates new.key
    kid, kek = provider.current()
    assert kid == key_id_for(kek) and provider.get(key_id_for(placeholder.read_bytes()))
    with pytest.raises(KeyFileError):
        provider.get("kek-unknown")
