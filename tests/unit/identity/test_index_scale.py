"""PalmIndex at scale: pooled coarse stage, packed bulk adds, recall against brute force."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from identity.errors import DuplicateTemplateError, TemplateFormatError
from identity.index import PalmIndex, pool_codes
from identity.matcher import PreparedProbe, ReferenceSet
from identity.scale_bench import filler_codes, round_seconds
from identity.template import Template

GRID = (32, 32)


def _smooth(seed: int) -> Template:
    """A random code with 4x4-cell blobs (palm codes are spatially correlated)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, 8, 8)) < 0.5
    return Template.from_bits(coarse.repeat(4, axis=1).repeat(4, axis=2), np.ones(GRID, bool))


def _noisy(t: Template, seed: int, flip: float = 0.15) -> Template:
    rng = np.random.default_rng(seed)
    return Template.from_bits(t.code_bits() ^ (rng.random((3, *GRID)) < flip), t.mask_bits())


def _packed(ts: list[Template]) -> tuple[np.ndarray, np.ndarray]:
    codes = np.stack([np.frombuffer(t.reference_code, np.uint8) for t in ts])
    return codes, np.stack([np.frombuffer(t.mask[:128], np.uint8) for t in ts])


@pytest.fixture(scope="module")
def refs() -> list[Template]:
    return [_smooth(s) for s in range(400)]


@pytest.fixture
def coarse_index(refs: list[Template]) -> PalmIndex:
    idx = PalmIndex(GRID, coarse_from=100)
    codes, masks = _packed(refs)
    ids = [f"t-{i}" for i in range(len(refs))]
    idx.add_packed(ids, [f"s-{i}" for i in range(len(refs))], codes, masks)
    assert idx.coarse
    return idx


def test_pool_codes_majority() -> None:
    bits = np.zeros((3, 4, 4), bool)
    bits[0, :2, :2] = True  # a full block: 1
    bits[1, 2, 2] = bits[1, 3, 3] = True  # a tie: 0
    bits[2, 0, 2:] = bits[2, 1, 2] = True  # 3 of 4: 1
    code = np.packbits(bits.ravel())[None, :]
    pooled = np.unpackbits(pool_codes(code, (4, 4), (2, 2)), axis=1)[0, :12].reshape(3, 2, 2)
    assert pooled.tolist() == [[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]]
    with pytest.raises(ValueError):
        pool_codes(code, (4, 4), (3, 3))


def test_recall_against_brute_force(coarse_index: PalmIndex, refs: list[Template]) -> None:
    everything = ReferenceSet.from_templates(refs)
    for probe_subject in range(0, 400, 8):
        probe = _noisy(refs[probe_subject], 10_000 + probe_subject)
        exact = PreparedProbe(probe).scores(everything)
        found = coarse_index.search(probe, shortlist=10)
        assert found[0].subject_id == f"s-{int(np.argmax(exact))}" == f"s-{probe_subject}"
        assert found[0].score == pytest.approx(float(exact.max()))


def test_remove_then_no_match(coarse_index: PalmIndex, refs: list[Template]) -> None:
    assert coarse_index.remove_subject("s-42") == 1
    found = coarse_index.search(_noisy(refs[42], 5), shortlist=10)
    assert "s-42" not in {c.subject_id for c in found}
    assert all(c.score < 0.5 for c in found)
    assert len(coarse_index) == 399


def test_packed_add_is_all_or_nothing(coarse_index: PalmIndex, refs: list[Template]) -> None:
    codes, masks = _packed(refs[:2])
    with pytest.raises(DuplicateTemplateError):
        coarse_index.add_packed(["new", "t-3"], ["a", "b"], codes, masks)
    with pytest.raises(DuplicateTemplateError):
        coarse_index.add_packed(["x", "x"], ["a", "b"], codes, masks)
    with pytest.raises(TemplateFormatError):
        coarse_index.add_packed(["y"], ["a"], codes, masks)
    assert "new" not in coarse_index and len(coarse_index) == 400


def test_switch_to_pooled_keeps_results(refs: list[Template]) -> None:
    idx = PalmIndex(GRID, coarse_from=50)
    for i, t in enumerate(refs[:60]):
        idx.add(f"t-{i}", f"s-{i}", t)
        assert idx.coarse == (i >= 49)
    assert idx.search(_noisy(refs[7], 1), shortlist=5)[0].subject_id == "s-7"
    assert idx.search(_noisy(refs[55], 1), shortlist=5)[0].subject_id == "s-55"


def test_concurrent_enrol_and_identify(coarse_index: PalmIndex, refs: list[Template]) -> None:
    def identify(i: int) -> str:
        return coarse_index.search(_noisy(refs[i % 50], 700 + i), shortlist=10)[0].subject_id

    def enrol(i: int) -> None:
        coarse_index.add(f"extra-{i}", f"extra-s-{i}", _smooth(50_000 + i))

    with ThreadPoolExecutor(max_workers=6) as pool:
        added = [pool.submit(enrol, i) for i in range(40)]
        results = list(pool.map(identify, range(80)))
        for f in added:
            f.result()
    assert results == [f"s-{i % 50}" for i in range(80)]
    assert len(coarse_index) == 440
    assert coarse_index.search(_smooth(50_003), shortlist=5)[0].subject_id == "extra-s-3"


def test_filler_codes_are_seeded_and_shaped(refs: list[Template]) -> None:
    a_codes, a_masks = filler_codes(refs[:20], 64, seed=3)
    b_codes, _ = filler_codes(refs[:20], 64, seed=3)
    assert a_codes.shape == (64, 384) and a_masks.shape == (64, 128)
    assert np.array_equal(a_codes, b_codes)
    flipped = np.unpackbits(a_codes, axis=1).mean()
    assert 0.3 < flipped < 0.7


def test_fast_2x2_pooling_equals_the_generic_one() -> None:
    from identity.index import _pool_2x2

    codes = np.random.default_rng(8).integers(0, 256, (50, 384), dtype=np.uint8)
    bits = np.unpackbits(codes, axis=1).reshape(50, 3, 16, 2, 16, 2)
    generic = np.packbits((bits.sum(axis=(3, 5)) * 2 > 4).reshape(50, -1), axis=1)
    assert np.array_equal(_pool_2x2(codes, 32, 32), generic)
    assert np.array_equal(pool_codes(codes, GRID, (2, 2)), generic)


def test_bench_times_keep_four_significant_digits() -> None:
    # a restart of a small gallery (1,000 templates at ~20,000 per second) is not 0.0
    assert round_seconds(1000 / 20_000) == 0.05
    assert round_seconds(0.000123456) == 0.0001235
    assert round_seconds(12.3456) == 12.35
    assert round_seconds(1234.56) == 1235.0
    assert round_seconds(0.0) == 0.0
