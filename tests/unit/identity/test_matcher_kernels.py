"""The compiled matcher loops (identity.kernels) against the definitions, one alignment at a
time: whole-cell counts, the refinement around the best whole-cell alignment, and bad shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from identity import kernels, params
from identity.matcher import NO_MATCH_DISTANCE, PreparedProbe, ReferenceSet, _pack_words, translate
from identity.template import Template

W = params.FUSION_WEIGHT_COMPCODE


def _random(rng: np.random.Generator, grid: tuple[int, int], variants: int, valid: float,
            refine_offsets: int = 0) -> Template:
    code = rng.random((variants, 3, *grid)) < 0.5
    mask = rng.random((variants, *grid)) < valid
    ordc = rng.random((variants, 3, *grid)) < 0.5
    return Template.from_bits(code, mask, ordc, refine_offsets)


def _distance(probe: Template, variant: int, ref: Template, dy: int, dx: int,
              min_bits: float) -> float:
    """The fused distance of one probe variant moved by (dy, dx) cells against variant 0 of
    ``ref``, straight from the bits (inf when too few bits are valid in both)."""
    moved = translate(Template.from_bits(probe.code_bits(variant), probe.mask_bits(variant),
                                         probe.ordinal_bits(variant)), dy, dx)
    ordinal = translate(Template.from_bits(probe.ordinal_bits(variant),
                                           probe.mask_bits(variant)), dy, dx)
    both = moved.mask_bits(0) & ref.mask_bits(0)
    valid = 3 * int(both.sum())
    if valid < min_bits:
        return float("inf")
    diff = int(((moved.code_bits(0) ^ ref.code_bits(0)) & both).sum())
    diff_ord = int(((ordinal.code_bits(0) ^ ref.ordinal_bits(0)) & both).sum())
    return (W * diff + (1.0 - W) * diff_ord) / valid


def _refined_by_definition(probe: Template, ref: Template, max_shift: int,
                           min_overlap: float) -> float:
    """Whole-cell search over the rotations, then the probe's refinement variants of the best
    rotation at the best translation +-1 cell (clipped to the search range); the minimum."""
    h, w = probe.grid
    min_bits = min_overlap * 3 * h * w
    n_rot, n_off = probe.rotation_variants, probe.refine_offsets
    shifts = range(-max_shift, max_shift + 1)
    best, where = float("inf"), (0, 0, 0)
    for r in range(n_rot):
        for dy in shifts:
            for dx in shifts:
                d = _distance(probe, r, ref, dy, dx, min_bits)
                if d < best:
                    best, where = d, (r, dy, dx)
    if best == float("inf"):
        return NO_MATCH_DISTANCE
    r, dy0, dx0 = where
    for o in range(n_off):
        for dy in {min(max(dy0 + s, -max_shift), max_shift) for s in (-1, 0, 1)}:
            for dx in {min(max(dx0 + s, -max_shift), max_shift) for s in (-1, 0, 1)}:
                best = min(best, _distance(probe, n_rot + r * n_off + o, ref, dy, dx, min_bits))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_fused_distance_equals_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid, n_rot, n_off = (9, 11), 2, 3
    probe = _random(rng, grid, n_rot * (1 + n_off), 0.8, refine_offsets=n_off)
    # refinement variant 2 of rotation 1 = rotation 1 with a fifth of its bits flipped
    v = n_rot + 1 * n_off + 2
    code, mask, ordc = (np.stack([f(i) for i in range(probe.variants)]) for f in (
        probe.code_bits, probe.mask_bits, probe.ordinal_bits))
    code[v] = code[1] ^ (rng.random(code[1].shape) < 0.2)
    ordc[v] = ordc[1] ^ (rng.random(ordc[1].shape) < 0.2)
    mask[v] = mask[1]
    probe = Template.from_bits(code, mask, ordc, n_off)
    refs = [_random(rng, grid, 1, valid) for valid in (0.9, 0.7, 0.5, 0.2, 0.0)]
    # a related reference: that refinement variant moved by (1, -2) cells
    moved = translate(Template.from_bits(code[v], mask[v], ordc[v]), 1, -2)
    moved_ord = translate(Template.from_bits(ordc[v], mask[v]), 1, -2)
    refs.append(Template.from_bits(moved.code_bits(0), moved.mask_bits(0),
                                   moved_ord.code_bits(0)))
    got = PreparedProbe(probe, fused=True, max_shift=2, min_overlap=0.3).distances(
        ReferenceSet.from_templates(refs, fused=True))
    want = [_refined_by_definition(probe, r, 2, 0.3) for r in refs]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert got[4] == NO_MATCH_DISTANCE  # nothing valid: no match, refined or not
    # found at rotation 1, then exactly at its refinement variant
    assert got[5] == 0.0
    plain = PreparedProbe(probe.rotations_only(), fused=True, max_shift=2, min_overlap=0.3)
    assert 0.1 < plain.distances(ReferenceSet.from_templates(refs[5:], fused=True))[0] < 0.3


def test_alignment_counts_are_the_masked_bit_counts() -> None:
    rng = np.random.default_rng(5)
    probe = _random(rng, (6, 7), 2, 0.7)
    refs = [_random(rng, (6, 7), 1, 0.6) for _ in range(4)]
    prepared = PreparedProbe(probe, fused=True, max_shift=1, min_overlap=0.1)
    diff, valid, diff_ord = prepared.counts(ReferenceSet.from_templates(refs, fused=True))
    assert diff_ord is not None and diff.shape == valid.shape == (2 * 9, 4)
    row = 0
    for r in range(2):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                code = translate(Template.from_bits(probe.code_bits(r), probe.mask_bits(r)),
                                 dy, dx)
                ordc = translate(Template.from_bits(probe.ordinal_bits(r),
                                                    probe.mask_bits(r)), dy, dx)
                for m, ref in enumerate(refs):
                    both = code.mask_bits(0) & ref.mask_bits(0)
                    assert valid[row, m] == 3 * both.sum()
                    assert diff[row, m] == ((code.code_bits(0) ^ ref.code_bits(0)) & both).sum()
                    assert diff_ord[row, m] == (
                        (ordc.code_bits(0) ^ ref.ordinal_bits(0)) & both).sum()
                row += 1
    compcode_only = PreparedProbe(probe, max_shift=1, min_overlap=0.1).counts(
        ReferenceSet.from_templates(refs))
    assert compcode_only[2] is None and np.array_equal(compcode_only[0], diff)


def test_kernels_refuse_mismatched_shapes() -> None:
    words = np.zeros((3, 4), np.uint64)
    empty = np.zeros((0, 4), np.uint64)
    with pytest.raises(ValueError, match="differ"):
        kernels.alignment_counts((words, words[:2], empty), (words, words, empty), False)
    with pytest.raises(ValueError, match="words per row"):
        kernels.alignment_counts((words, words, empty),
                                 (words[:, :3], words[:, :3], empty), False)
    with pytest.raises(ValueError, match="ordinal"):
        kernels.best_distances((words, words, empty), (words, words, empty), fused=True,
                               weight=W, min_valid=1, no_match=1.0)
    with pytest.raises(ValueError, match="refinement rows"):
        kernels.best_distances((words, words, words), (words, words, words), fused=True,
                               weight=W, min_valid=1, no_match=1.0,
                               refinement=(words, words, words), n_rot=1, n_off=1, n_shift=3)


@pytest.mark.parametrize("width", [8, 16, 32, 40, 64])
@pytest.mark.parametrize("max_shift", [0, 1, 3])
def test_translated_words_equal_translating_then_packing(width: int, max_shift: int) -> None:
    rng = np.random.default_rng(width * 10 + max_shift)
    bits = rng.random((2, 3, 5, width)) < 0.5
    want = _pack_words(np.stack([
        translate(Template.from_bits(b, np.ones(b.shape[1:], bool)), dy, dx).code_bits(0)
        for b in bits for dy in range(-max_shift, max_shift + 1)
        for dx in range(-max_shift, max_shift + 1)]).reshape((2 * max_shift + 1) ** 2 * 2, -1))
    got = kernels.translated_words(bits, max_shift)
    assert got is not None and got.dtype == np.uint64
    assert np.array_equal(got, want)


def test_translated_words_leave_other_widths_to_the_caller() -> None:
    assert kernels.translated_words(np.zeros((1, 3, 4, 12), bool), 1) is None
    assert kernels.translated_words(np.zeros((1, 3, 4, 72), bool), 1) is None
    with pytest.raises(ValueError, match="max_shift"):
        kernels.translated_words(np.zeros((1, 3, 4, 8), bool), -1)
    with pytest.raises(ValueError, match="max_shift"):
        kernels.translated_words(np.zeros((3, 4, 8), bool), 1)


def test_probes_of_any_grid_prepare_the_same_alignments() -> None:
    """A grid the word path takes (32 wide) and one it leaves to numpy (11 wide) give the
    distances of the definition alike (the brute force of test_fused_matcher)."""
    rng = np.random.default_rng(9)
    for grid in ((6, 32), (6, 11)):
        probe = _random(rng, grid, 2, 0.8)
        refs = [_random(rng, grid, 1, 0.7) for _ in range(3)]
        got = PreparedProbe(probe, fused=True, max_shift=2, min_overlap=0.2).distances(
            ReferenceSet.from_templates(refs, fused=True))
        want = [min(_distance(probe, r, ref, dy, dx, 0.2 * 3 * grid[0] * grid[1])
                    for r in range(2) for dy in range(-2, 3) for dx in range(-2, 3))
                for ref in refs]
        assert got.tolist() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("grid", [(32, 32), (6, 32), (4, 2), (9, 11), (3, 5)])
def test_reference_words_are_the_packed_bits(grid: tuple[int, int]) -> None:
    """References packed from the stored bytes (grids of whole bytes) or from the bits (the
    others) are the same words: codes, masks repeated over the 3 planes, ordinal codes."""
    rng = np.random.default_rng(grid[0] * 100 + grid[1])
    templates = [_random(rng, grid, 2, 0.6) for _ in range(4)]
    refs = ReferenceSet.from_templates(templates, fused=True)
    assert refs.ordinal is not None
    planes = np.stack([np.broadcast_to(t.mask_bits(0), (3, *grid)).ravel() for t in templates])
    assert np.array_equal(refs.codes, _pack_words(np.stack([t.code_bits(0).ravel()
                                                            for t in templates])))
    assert np.array_equal(refs.masks, _pack_words(planes))
    assert np.array_equal(refs.ordinal, _pack_words(np.stack([t.ordinal_bits(0).ravel()
                                                              for t in templates])))
    assert ReferenceSet.from_templates(templates).ordinal is None


def test_without_a_writable_cache_the_kernels_compile_in_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """numba refuses ``cache=True`` when no cache folder can be written (a read-only install
    and no writable home); the kernels are then compiled without a cache, not an error."""
    real = kernels.njit

    def no_cache_location(*args: object, **options: object) -> object:
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real(*args, **options)

    monkeypatch.setattr(kernels, "njit", no_cache_location)

    def add(a: int, b: int) -> int:
        return a + b

    compiled = kernels._compiled(nogil=True)(add)
    assert compiled(2, 3) == 5 and compiled is not add
    kernels.warm_up()  # and the real kernels load or compile without raising
