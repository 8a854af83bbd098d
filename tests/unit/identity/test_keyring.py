"""Per-person data keys: envelope encryption, crypto-shredding, KEK rotation while serving."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from identity.errors import KeyFileError, TemplateDecryptionError
from identity.imageio import encode_png
from identity.keyring import InMemorySubjectKeyStore, Keyring
from identity.protection import is_placeholder_key, key_id_for
from identity.repository import InMemoryTemplateRepository
from identity.service import IdentityService
from identity.settings import IdentitySettings
from identity.synthetic import SyntheticPalms
from identity.template import Template


class DictProvider:
    """KEKs in memory; ``current`` is the first added."""

    def __init__(self, *keks: bytes) -> None:
        self.keys = {key_id_for(k): k for k in keks}
        self.current_id = key_id_for(keks[0])

    def current(self) -> tuple[str, bytes]:
        return self.current_id, self.keys[self.current_id]

    def get(self, key_id: str) -> bytes:
        if key_id not in self.keys:
            raise KeyFileError(f"unknown {key_id}")
        return self.keys[key_id]


def _template_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return Template.from_bits(rng.random((3, 32, 32)) < 0.5, np.ones((32, 32), bool),
                              rng.random((3, 32, 32)) < 0.5).to_bytes()


KEK1, KEK2 = bytes(range(32)), bytes(range(100, 132))


def test_round_trip_and_bindings() -> None:
    ring = Keyring(DictProvider(KEK1), InMemorySubjectKeyStore())
    blob = ring.encrypt("alice", _template_bytes(1))
    assert ring.decrypt("alice", blob) == _template_bytes(1)
    ring.encrypt("bob", _template_bytes(2))
    with pytest.raises(TemplateDecryptionError):
        ring.decrypt("bob", blob)  # moved to another person
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(TemplateDecryptionError):
        ring.decrypt("alice", bytes(tampered))


def test_shredding_makes_every_copy_unreadable() -> None:
    ring = Keyring(DictProvider(KEK1), InMemorySubjectKeyStore())
    backup = ring.encrypt("alice", _template_bytes(1))
    assert ring.shred("alice") and not ring.shred("alice")
    with pytest.raises(TemplateDecryptionError, match="deleted"):
        ring.decrypt("alice", backup)


def test_copied_keys_without_the_kek_yield_nothing() -> None:
    store = InMemorySubjectKeyStore()
    blob = Keyring(DictProvider(KEK1), store).encrypt("alice", _template_bytes(1))
    thief = Keyring(DictProvider(os.urandom(32)), store)
    with pytest.raises(TemplateDecryptionError):
        thief.decrypt("alice", blob)


def test_rotation_rewraps_while_serving() -> None:
    provider, store = DictProvider(KEK1), InMemorySubjectKeyStore()
    ring = Keyring(provider, store)
    blobs = {f"s{i}": ring.encrypt(f"s{i}", _template_bytes(i)) for i in range(40)}
    provider.keys[key_id_for(KEK2)] = KEK2
    provider.current_id = key_id_for(KEK2)  # new KEK current, old one retained

    def read(i: int) -> bool:
        return ring.decrypt(f"s{i % 40}", blobs[f"s{i % 40}"]) == _template_bytes(i % 40)

    with ThreadPoolExecutor(max_workers=4) as pool:
        rotated = pool.submit(ring.rotate)
        assert all(pool.map(read, range(200)))
        assert rotated.result() == 40
    assert {k.kek_id for k in store.all()} == {key_id_for(KEK2)}
    del provider.keys[key_id_for(KEK1)]  # the old KEK is retired
    assert all(read(i) for i in range(40))
    assert ring.rotate() == 0


def test_identification_after_rotation_and_deletion() -> None:
    palms = SyntheticPalms(seed=5)
    provider, store = DictProvider(KEK1), InMemorySubjectKeyStore()
    repo = InMemoryTemplateRepository()
    svc = IdentityService(repository=repo, cipher=Keyring(provider, store),
                          settings=IdentitySettings())
    for p in range(3):
        svc.enrol(subject_id=f"p{p}", images=[encode_png(palms.capture(p, c)) for c in range(2)])
    provider.keys[key_id_for(KEK2)] = KEK2
    provider.current_id = key_id_for(KEK2)
    assert Keyring(provider, store).rotate() == 3
    del provider.keys[key_id_for(KEK1)]
    restarted = IdentityService(repository=repo, cipher=Keyring(provider, store),
                                settings=IdentitySettings())
    assert restarted.load() == 6
    assert restarted.identify(image=encode_png(palms.capture(1, 9))).subject_id == "p1"
    stolen = list(repo.all())  # a backup taken before the deletion
    restarted.delete(subject_id="p1")
    assert restarted.identify(image=encode_png(palms.capture(1, 9))).subject_id is None
    with pytest.raises(TemplateDecryptionError):
        Keyring(provider, store).decrypt("p1", next(r for r in stolen if r.subject_id == "p1")
                                         .ciphertext)


def test_placeholder_keys_are_recognised() -> None:
    assert is_placeholder_key(bytes(32))
    assert is_placeholder_key(b"CHANGE-ME-CHANGE-ME-CHANGE-ME-!!")
    assert not is_placeholder_key(bytes(range(32)))
