"""Templates of a retired format version (identity.retired): the per-person report, the
purge (retired records only; a person left with nothing loses their data key too), and
InMemoryTemplateRepository.delete_templates with its change log. In memory only."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import numpy as np
import pytest

from identity.errors import KeyFileError, TemplateDecryptionError
from identity.imageio import encode_png
from identity.keyring import InMemorySubjectKeyStore, Keyring
from identity.protection import TemplateCipher, key_id_for
from identity.repository import InMemoryTemplateRepository, TemplateRecord
from identity.retired import PurgedSubject, classify, purge_retired, scan_retired
from identity.service import IdentityService, template_from_image
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms
from identity.template import MAGIC, Template

KEK = bytes(range(32))
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class _Provider:
    """One KEK in memory."""

    def current(self) -> tuple[str, bytes]:
        return key_id_for(KEK), KEK

    def get(self, key_id: str) -> bytes:
        if key_id != key_id_for(KEK):
            raise KeyFileError(f"unknown {key_id}")
        return KEK


def _v3(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return Template.from_bits(rng.random((3, 16, 16)) < 0.5, np.ones((16, 16), bool),
                              rng.random((3, 16, 16)) < 0.5).to_bytes()


def _v2(seed: int) -> bytes:
    """The v2 layout (template.py): the v3 header without the ordinal length, code, mask."""
    t = Template.from_bytes(_v3(seed))
    return struct.pack(">4sBBBHHII", MAGIC, 2, 3, t.variants, *t.grid, len(t.code),
                       len(t.mask)) + t.code + t.mask


def _v1(seed: int) -> bytes:
    return MAGIC + b"\x01" + bytes([seed % 256]) * 40  # refused on the version byte alone


class _Store:
    """A keyring (a data key per person) over an in-memory repository."""

    def __init__(self) -> None:
        self.keys = InMemorySubjectKeyStore()
        self.ring = Keyring(_Provider(), self.keys)
        self.repo = InMemoryTemplateRepository()

    def add(self, template_id: str, subject_id: str, plain: bytes) -> None:
        blob = self.ring.encrypt(subject_id, plain)
        self.repo.add([TemplateRecord(template_id, subject_id, blob, NOW)])

    def ids(self, subject_id: str) -> list[str]:
        return [r.template_id for r in self.repo.of_subjects([subject_id])]


@pytest.fixture
def store() -> _Store:
    """mixed: 2 usable + 1 v2; old: 1 v2 + 1 v1 only; fresh: 2 usable; gone: 1 usable +
    1 v2, data key shredded; damaged: 1 usable + 1 tampered v2 blob."""
    s = _Store()
    s.add("m1", "mixed", _v3(1))
    s.add("m2", "mixed", _v3(2))
    s.add("m3", "mixed", _v2(3))
    s.add("o1", "old", _v2(4))
    s.add("o2", "old", _v1(5))
    s.add("f1", "fresh", _v3(6))
    s.add("f2", "fresh", _v3(7))
    s.add("g1", "gone", _v3(8))
    s.add("g2", "gone", _v2(9))
    s.ring.shred("gone")
    s.add("d1", "damaged", _v3(10))
    blob = bytearray(s.ring.encrypt("damaged", _v2(11)))
    blob[-1] ^= 1
    s.repo.add([TemplateRecord("d2", "damaged", bytes(blob), NOW)])
    return s


def test_scan_counts_retired_by_version_usable_and_unreadable_per_person(store: _Store) -> None:
    report = scan_retired(store.repo, store.ring)
    rows = {s.subject_id: (dict(s.retired), s.usable, s.unreadable, s.retired_ids)
            for s in report.subjects}
    assert rows == {
        "damaged": ({}, 1, 1, ()),
        "gone": ({}, 0, 2, ()),  # shredded: even its v2 record cannot be told apart
        "mixed": ({2: 1}, 2, 0, ("m3",)),
        "old": ({1: 1, 2: 1}, 0, 0, ("o1", "o2")),
    }
    assert [s.subject_id for s in report.subjects] == ["damaged", "gone", "mixed", "old"]
    assert [s.subject_id for s in report.affected] == ["mixed", "old"]
    assert (report.persons_scanned, report.templates_scanned, report.usable) == (5, 11, 5)
    assert report.retired_by_version == {1: 1, 2: 2} and report.unreadable == 3


def test_classify_reads_the_version_only_after_authenticated_decryption(store: _Store) -> None:
    [o1] = [r for r in store.repo.all() if r.template_id == "o1"]
    assert classify(o1, store.ring) == ("retired", 2)
    assert o1.ciphertext[1] == 2  # the clear header says so too, but only decryption proves it
    moved = TemplateRecord("x", "mixed", o1.ciphertext, NOW)  # bound to "old"
    assert classify(moved, store.ring) == ("unreadable", 0)
    store.add("u1", "mixed", MAGIC + b"\x09" + bytes(30))  # decrypts, unknown version
    [u1] = [r for r in store.repo.all() if r.template_id == "u1"]
    assert classify(u1, store.ring) == ("unreadable", 0)
    with pytest.raises(TemplateDecryptionError):  # what the scan turns into "unreadable"
        store.ring.decrypt("gone", next(r for r in store.repo.all() if r.subject_id == "gone")
                           .ciphertext)


def test_purge_deletes_exactly_the_retired_records_and_keeps_usable_ones(
        store: _Store) -> None:
    seen: list[PurgedSubject] = []
    result = purge_retired(store.repo, store.ring, on_subject=seen.append)
    assert result.deleted == 3
    assert [(p.subject_id, p.deleted, dict(p.by_version), p.kept, p.removed)
            for p in result.subjects] == [("mixed", 1, {2: 1}, 2, False),
                                          ("old", 2, {1: 1, 2: 1}, 0, True)]
    assert seen == list(result.subjects)
    assert store.ids("mixed") == ["m1", "m2"] and store.ids("old") == []
    assert store.ids("fresh") == ["f1", "f2"]
    assert store.ids("gone") == ["g1", "g2"] and store.ids("damaged") == ["d1", "d2"]
    assert store.keys.get("old") is None  # nothing left: crypto-shredded as on delete
    assert store.keys.get("mixed") is not None  # keeps usable templates, so keeps its key
    for r in store.repo.of_subjects(["mixed"]):
        Template.from_bytes(store.ring.decrypt("mixed", r.ciphertext))
    again = purge_retired(store.repo, store.ring)
    assert (again.deleted, again.subjects, again.skipped) == (0, (), ())


def test_purge_of_a_stale_report_never_removes_a_palm_enrolled_meanwhile(
        store: _Store) -> None:
    report = scan_retired(store.repo, store.ring)
    store.add("o3", "old", _v3(12))  # "old" enrols again after the scan
    result = purge_retired(store.repo, store.ring, report)
    assert [(p.subject_id, p.deleted, p.kept, p.removed) for p in result.subjects] == [
        ("mixed", 1, 2, False), ("old", 2, 1, False)]
    assert store.ids("old") == ["o3"] and store.keys.get("old") is not None


def test_purge_skips_a_person_who_also_has_unreadable_templates(store: _Store) -> None:
    """Deleting would log that person's remaining records as added again, and every
    process would then fail on the unreadable one: they are left for a look first."""
    store.add("b1", "broken", _v2(13))
    blob = bytearray(store.ring.encrypt("broken", _v3(14)))
    blob[-1] ^= 1
    store.repo.add([TemplateRecord("b2", "broken", bytes(blob), NOW)])
    cursor = store.repo.head()
    result = purge_retired(store.repo, store.ring)
    assert result.skipped == ("broken",)
    assert [p.subject_id for p in result.subjects] == ["mixed", "old"]
    assert store.ids("broken") == ["b1", "b2"] and store.keys.get("broken") is not None
    assert "broken" not in store.repo.changes_since(cursor).removed_subjects


def test_delete_templates_logs_so_no_process_sees_a_deleted_record_as_added() -> None:
    s = _Store()
    for tid, sid in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        s.add(tid, sid, _v3(len(tid) + ord(tid[0])))
    cursor = s.repo.head()
    assert s.repo.delete_templates(["a2", "a2", "nope", "b1"]) == 2
    assert s.repo.delete_templates(["a2"]) == 0
    changes = s.repo.changes_since(cursor)
    assert sorted(changes.removed_subjects) == ["a", "b"]
    assert [r.template_id for r in changes.added] == ["a1"]  # what remains, added again
    assert changes.cursor == s.repo.head() == cursor + 3
    fresh = s.repo.changes_since(0)  # a process starting from the beginning
    assert {r.template_id for r in fresh.added} == {"a1"}
    assert [r.template_id for r in s.repo.all()] == ["a1"] and s.ids("b") == []


def test_processes_drop_purged_rows_and_still_identify_the_usable_person() -> None:
    """A process whose index holds a retired row (an index snapshot written before v3)
    drops it when it replays the purge; the person with usable templates left is still
    identified there and after a rebuild."""
    palms = SyntheticPalms(seed=11)
    repo = InMemoryTemplateRepository()
    cipher = TemplateCipher(KEK, "test")
    svc = IdentityService(repository=repo, cipher=cipher, settings=IdentitySettings())
    svc.enrol(subject_id="a", images=[encode_png(palms.capture(0, c)) for c in range(2)])
    old = template_from_image(encode_png(palms.capture(1, 0)))
    v2 = struct.pack(">4sBBBHHII", MAGIC, 2, 3, old.variants, *old.grid, len(old.code),
                     len(old.mask)) + old.code + old.mask
    repo.add([TemplateRecord("legacy", "old", cipher.encrypt("old", v2), NOW),
              TemplateRecord("legacy-a", "a", cipher.encrypt("a", v2), NOW)])
    svc._index.add("legacy", "old", old)  # as a pre-v3 snapshot holds it
    svc.refresh()
    result = purge_retired(repo, cipher)
    assert result.deleted == 2 and [p.removed for p in result.subjects] == [False, True]
    svc.refresh()
    assert "legacy" not in svc._index and "old" not in {c.subject_id for c in
                                                        svc._index.search(old, 10)}
    assert svc.identify(image=encode_png(palms.capture(0, 5))).subject_id == "a"
    fresh = IdentityService(repository=repo, cipher=cipher, settings=IdentitySettings())
    assert fresh.load() == 2
    assert fresh.identify(image=encode_png(palms.capture(0, 6))).subject_id == "a"
