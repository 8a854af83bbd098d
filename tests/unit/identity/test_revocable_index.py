"""Revocable codes inside the palm index: only protected codes are held, scores equal the
clear ones, codes of two keys never match, and the key file follows rotations."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from identity import params
from identity.errors import KeyFileError
from identity.imageio import encode_png
from identity.index import PalmIndex, pool_codes
from identity.matcher import PreparedProbe, ReferenceSet, match_score
from identity.revocable import (
    KeyFileTransform,
    RevocableTransform,
    next_key_file,
    prepare_next_key,
    promote_next_key,
)
from identity.service import template_from_image
from identity.synthetic import SyntheticPalms
from identity.template import Template

GRID = (32, 32)
KEY_A = RevocableTransform(hashlib.sha256(b"test key a").digest())
KEY_B = RevocableTransform(hashlib.sha256(b"test key b").digest())


def _smooth(seed: int) -> Template:
    """A random code of 4x4-cell blobs with a random mask (palm codes are smooth)."""
    rng = np.random.default_rng(seed)
    code = (rng.random((3, 8, 8)) < 0.5).repeat(4, axis=1).repeat(4, axis=2)
    return Template.from_bits(code, rng.random(GRID) < 0.95)


def _noisy(t: Template, seed: int, flip: float = 0.12) -> Template:
    rng = np.random.default_rng(seed)
    moved = np.roll(t.code_bits(), 1, axis=2) ^ (rng.random((3, *GRID)) < flip)
    return Template.from_bits(moved, np.ones(GRID, bool))


def _packed(ts: list[Template]) -> tuple[np.ndarray, np.ndarray]:
    return (np.stack([np.frombuffer(t.reference_code, np.uint8) for t in ts]),
            np.stack([np.frombuffer(t.mask[:128], np.uint8) for t in ts]))


@pytest.fixture(scope="module")
def refs() -> list[Template]:
    return [_smooth(s) for s in range(120)]


def _index(refs: list[Template], key: RevocableTransform, coarse_from: int) -> PalmIndex:
    idx = PalmIndex(GRID, coarse_from=coarse_from, transform=key)
    codes, masks = _packed(refs)
    idx.add_packed([f"t-{i}" for i in range(len(refs))], [f"s-{i}" for i in range(len(refs))],
                   codes, masks)
    return idx


def test_packed_transforms_equal_the_bit_transform(refs: list[Template]) -> None:
    codes, masks = _packed(refs[:7])
    for i, t in enumerate(refs[:7]):
        expected = KEY_A.apply(t)
        assert KEY_A.codes(codes)[i].tobytes() == expected.reference_code
        assert KEY_A.masks(masks)[i].tobytes() == expected.mask[:128]


def test_pooled_protection_preserves_hamming_distance_and_depends_on_the_key(
    refs: list[Template],
) -> None:
    pooled = pool_codes(_packed(refs[:20])[0], GRID, (2, 2))
    a, b = KEY_A.pooled(pooled, 768), KEY_B.pooled(pooled, 768)

    def dist(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.unpackbits(x[:, None, :] ^ x[None, :, :], axis=2).sum(axis=2))

    assert np.array_equal(dist(a), dist(pooled))
    assert not np.array_equal(a, pooled) and not np.array_equal(a, b)
    cross = np.unpackbits(a ^ b, axis=1).mean(axis=1)  # same code, two keys: ~ half differ
    assert np.all((cross > 0.35) & (cross < 0.65))


@pytest.mark.parametrize("coarse_from", [10_000, 50])
def test_index_holds_only_protected_codes(refs: list[Template], coarse_from: int) -> None:
    idx = _index(refs, KEY_A, coarse_from)
    assert idx.coarse == (coarse_from == 50) and idx.key_id == KEY_A.key_id
    rows = idx.export_rows()
    order = [int(t.split("-")[1]) for t in rows.template_ids]
    clear_codes, clear_masks = _packed([refs[i] for i in order])
    clear_pooled = pool_codes(clear_codes, GRID, (2, 2))
    assert rows.key_id == KEY_A.key_id
    assert np.array_equal(rows.codes, KEY_A.codes(clear_codes))
    assert np.array_equal(rows.masks, KEY_A.masks(clear_masks))
    assert np.array_equal(rows.pooled, KEY_A.pooled(clear_pooled, 768))
    same = (rows.codes == clear_codes).all(axis=1) | (rows.pooled == clear_pooled).all(axis=1)
    assert not same.any()


@pytest.mark.parametrize("coarse_from", [10_000, 50])
def test_scores_equal_the_clear_scores_under_any_key(refs: list[Template],
                                                     coarse_from: int) -> None:
    a, b = _index(refs, KEY_A, coarse_from), _index(refs, KEY_B, coarse_from)
    for s in range(0, 120, 9):
        probe = _noisy(refs[s], 500 + s)
        found_a, found_b = a.search(probe, shortlist=10), b.search(probe, shortlist=10)
        assert found_a == found_b  # the shortlist and every score do not depend on the key
        assert found_a[0].subject_id == f"s-{s}"
        # the index scores CompCode alone (its references carry no ordinal code)
        assert found_a[0].score == pytest.approx(match_score(probe, refs[s], fused=False))


def test_export_and_add_rows_round_trip_and_refuse_another_key(refs: list[Template]) -> None:
    for coarse_from in (10_000, 50):
        idx = _index(refs, KEY_A, coarse_from)
        idx.remove_subject("s-3")
        restored = PalmIndex(GRID, coarse_from=coarse_from, transform=KEY_A)
        restored.add_rows(idx.export_rows())
        assert len(restored) == 119 and restored.coarse == idx.coarse
        probe = _noisy(refs[17], 1)
        assert restored.search(probe, 5) == idx.search(probe, 5)
        with pytest.raises(ValueError, match="another|transform"):
            PalmIndex(GRID, transform=KEY_B).add_rows(idx.export_rows())


def test_switch_to_pooled_keeps_protected_codes(refs: list[Template]) -> None:
    idx = PalmIndex(GRID, coarse_from=40, transform=KEY_B)
    for i, t in enumerate(refs[:60]):
        idx.add(f"t-{i}", f"s-{i}", t)
    assert idx.coarse
    assert idx.search(_noisy(refs[5], 2), 5)[0].subject_id == "s-5"
    assert idx.search(_noisy(refs[55], 2), 5)[0].subject_id == "s-55"
    assert len(idx.export_rows().pooled) == 60


@pytest.fixture(scope="module")
def palms() -> list[tuple[Template, Template]]:
    """(enrolment, later capture) templates of 8 seeded synthetic palms."""
    synth = SyntheticPalms(seed=41)
    return [(template_from_image(encode_png(synth.capture(p, 0))),
             template_from_image(encode_png(synth.capture(p, 6)))) for p in range(8)]


def test_cross_key_genuine_scores_fall_below_the_threshold(
    palms: list[tuple[Template, Template]],
) -> None:
    refs_a = ReferenceSet.from_templates([KEY_A.apply(ref) for ref, _ in palms])
    for i, (ref, probe) in enumerate(palms):
        same = PreparedProbe(probe, transform=KEY_A.bits).scores(refs_a)
        cross = PreparedProbe(probe, transform=KEY_B.bits).scores(refs_a)
        assert same[i] == pytest.approx(match_score(probe, ref, fused=False))
        assert same[i] >= params.IDENTIFY_THRESHOLD  # genuine under one key: a match
        assert cross.max() < params.IDENTIFY_THRESHOLD  # under another key: no match at all
        assert cross[i] < 0.1  # the genuine pair scores like an unrelated palm


def test_key_file_is_created_in_development_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "revocable.key"
    with pytest.raises(KeyFileError, match="does not exist"):
        KeyFileTransform(path, development=False)
    made = KeyFileTransform(path, development=True)
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_bytes()) == 32
    assert KeyFileTransform(path, development=False).current().key_id == made.current().key_id


def test_placeholder_and_unsafe_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "revocable.key"
    path.write_bytes(b"CHANGE-ME-CHANGE-ME-CHANGE-ME-!!")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="placeholder"):
        KeyFileTransform(path, development=False)
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="group or others"):
        KeyFileTransform(path, development=True)


def test_key_file_rotation_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "revocable.key"
    source = KeyFileTransform(path, development=True)
    old = source.current()
    stale = prepare_next_key(path)  # an interrupted rotation: never promoted
    new = prepare_next_key(path)  # the rerun replaces it
    assert stale.key_id != new.key_id
    assert source.current().key_id == old.key_id  # not current until promoted
    promote_next_key(path)
    assert not next_key_file(path).exists()
    assert source.current().key_id == new.key_id != old.key_id
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileNotFoundError):
        promote_next_key(path)
