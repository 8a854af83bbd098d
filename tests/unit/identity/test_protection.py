"""Envelope encryption of templates and the key file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from identity.errors import KeyFileError, TemplateDecryptionError, TemplateFormatError
from identity.protection import TemplateCipher, key_id_for, load_or_create_key_file
from identity.template import Template

KEK = bytes(range(32))


def _template_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return Template.from_bits(rng.random((3, 8, 8)) < 0.5, np.ones((8, 8), bool),
                              rng.random((3, 8, 8)) < 0.5).to_bytes()


def test_round_trip_and_fresh_randomness() -> None:
    cipher = TemplateCipher(KEK, "k1")
    plain = _template_bytes()
    a, b = cipher.encrypt("alice", plain), cipher.encrypt("alice", plain)
    assert a != b  # fresh data key and nonces each time
    assert plain not in a
    assert cipher.decrypt("alice", a) == plain == cipher.decrypt("alice", b)


def test_wrong_subject_refused() -> None:
    cipher = TemplateCipher(KEK, "k1")
    blob = cipher.encrypt("alice", _template_bytes())
    with pytest.raises(TemplateDecryptionError):
        cipher.decrypt("bob", blob)


def test_every_tampered_byte_refused() -> None:
    cipher = TemplateCipher(KEK, "k1")
    blob = cipher.encrypt("alice", _template_bytes())
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(TemplateDecryptionError):
            cipher.decrypt("alice", bytes(bad))


@pytest.mark.parametrize("cut", [0, 1, 3, 20, 80])
def test_truncated_blob_refused(cut: int) -> None:
    cipher = TemplateCipher(KEK, "k1")
    with pytest.raises(TemplateDecryptionError):
        cipher.decrypt("alice", cipher.encrypt("alice", _template_bytes())[:cut])


def test_wrong_key_or_key_id_refused() -> None:
    blob = TemplateCipher(KEK, "k1").encrypt("alice", _template_bytes())
    with pytest.raises(TemplateDecryptionError, match="key id"):
        TemplateCipher(KEK, "k2").decrypt("alice", blob)
    with pytest.raises(TemplateDecryptionError):
        TemplateCipher(bytes(32), "k1").decrypt("alice", blob)


def test_only_templates_and_good_keys_accepted() -> None:
    with pytest.raises(TemplateFormatError):
        TemplateCipher(KEK, "k1").encrypt("alice", b"not a template")
    with pytest.raises(ValueError):
        TemplateCipher(b"short", "k1")
    with pytest.raises(ValueError):
        TemplateCipher(KEK, "")


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "template.key"
    kek, key_id = load_or_create_key_file(path, create=True)
    assert len(kek) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert key_id == key_id_for(kek)
    assert load_or_create_key_file(path, create=False) == (kek, key_id)


def test_missing_key_file_without_create_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_or_create_key_file(tmp_path / "nope.key", create=False)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    load_or_create_key_file(path, create=True)
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match="group or others"):
        load_or_create_key_file(path, create=True)


def test_key_file_wrong_length_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(b"x" * 31)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="31 bytes"):
        load_or_create_key_file(path, create=False)
