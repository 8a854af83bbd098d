"""Shift-tolerant matcher (fused CompCode + OrdinalCode by default, CompCode alone on request):
identity, shifts, impostors, masks, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.errors import TemplateFormatError
from identity.matcher import (
    PreparedProbe,
    ReferenceSet,
    distance_to_score,
    hamming_distance,
    match_score,
    score_matrix,
)
from identity.template import Template

GRID = (32, 32)


def _random(seed: int, valid: float = 1.0, grid: tuple[int, int] = GRID) -> Template:
    rng = np.random.default_rng(seed)
    return Template.from_bits(rng.random((3, *grid)) < 0.5, rng.random(grid) < valid,
                              rng.random((3, *grid)) < 0.5)


def _shifted(t: Template, dy: int, dx: int) -> Template:
    code, mask = np.roll(t.code_bits(), (dy, dx), axis=(1, 2)), np.roll(t.mask_bits(), (dy, dx))
    ordinal = np.roll(t.ordinal_bits(), (dy, dx), axis=(1, 2))
    # cells that wrapped around are not a translation of the original: mark them invalid
    keep = np.zeros_like(mask)
    h, w = mask.shape
    keep[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = True
    return Template.from_bits(code, mask & keep, ordinal)


def test_identical_templates_get_top_score() -> None:
    t = _random(1)
    assert hamming_distance(t, t) == 0.0
    assert match_score(t, t) == 1.0


@pytest.mark.parametrize(("dy", "dx"), [(2, 0), (0, -3), (-2, 3), (3, 3)])
def test_shifted_copy_still_matches(dy: int, dx: int) -> None:
    t = _random(2)
    assert hamming_distance(t, _shifted(t, dy, dx)) == 0.0


def test_shift_beyond_tolerance_does_not_match() -> None:
    t = _random(3)
    assert match_score(t, _shifted(t, 6, 0)) < 0.1


def test_random_codes_score_like_impostors() -> None:
    probes = [_random(s) for s in range(10, 15)]
    refs = [_random(s) for s in range(20, 30)]
    assert score_matrix(probes, refs).max() < 0.15
    dist = np.array([hamming_distance(p, r) for p in probes[:2] for r in refs[:3]])
    assert np.all((dist > 0.42) & (dist < 0.5))


def test_bits_outside_the_masks_are_ignored() -> None:
    t = _random(4)
    code, mask = t.code_bits(), t.mask_bits()
    mask[:, :8] = False
    masked = Template.from_bits(code, mask, t.ordinal_bits())
    code2, ordinal2 = code.copy(), t.ordinal_bits().copy()
    code2[:, :, :8] = ~code2[:, :, :8]  # flip only masked-out cells, in both codes
    ordinal2[:, :, :8] = ~ordinal2[:, :, :8]
    other = Template.from_bits(code2, mask, ordinal2)
    assert hamming_distance(masked, other) == 0.0
    assert hamming_distance(masked, other, fused=False) == 0.0


def test_too_little_overlap_is_no_match() -> None:
    t = _random(5)
    mask = np.zeros(GRID, dtype=bool)
    mask[:4, :4] = True
    tiny = Template.from_bits(t.code_bits(), mask, t.ordinal_bits())
    assert hamming_distance(tiny, t) == 1.0
    assert hamming_distance(tiny, t, fused=False) == 1.0
    assert match_score(tiny, t) == 0.0


def test_grid_mismatch_refused() -> None:
    with pytest.raises(TemplateFormatError):
        hamming_distance(_random(1), _random(1, grid=(16, 16)))


@pytest.mark.parametrize("fused", [True, False])
def test_prepared_probe_scores_many_references_like_pairwise(fused: bool) -> None:
    probe = _random(6)
    refs = [_random(s) for s in range(40, 45)] + [_shifted(probe, 1, -1)]
    batch = PreparedProbe(probe, fused=fused).scores(
        ReferenceSet.from_templates(refs, fused=fused))
    assert batch.shape == (6,)
    assert batch.dtype == np.float64
    assert np.allclose(batch, [match_score(probe, r, fused=fused) for r in refs])
    assert int(np.argmax(batch)) == 5


def test_score_matrix_shape_and_empty() -> None:
    probes, refs = [_random(s) for s in range(3)], [_random(s) for s in range(3, 7)]
    m = score_matrix(probes, refs, chunk=3)
    assert m.shape == (3, 4)
    assert m.dtype == np.float64
    assert score_matrix([], refs).shape == (0, 4)


def test_distance_to_score_is_monotone_and_clipped() -> None:
    d = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    s = distance_to_score(d)
    assert s[0] == 1.0
    assert np.all(np.diff(s) <= 0)
    assert np.all((s >= 0) & (s <= 1))
    assert s[3] == 0.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.floats(0.6, 1.0))
def test_distance_is_symmetric_and_bounded(a: int, b: int, valid: float) -> None:
    ta, tb = _random(a, valid, (8, 8)), _random(b, valid, (8, 8))
    d_ab, d_ba = hamming_distance(ta, tb), hamming_distance(tb, ta)
    assert d_ab == pytest.approx(d_ba)
    assert 0.0 <= d_ab <= 1.0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-3, 3), st.integers(-3, 3))
def test_any_tolerated_shift_of_a_code_matches_it(seed: int, dy: int, dx: int) -> None:
    t = _random(seed, 1.0, (16, 16))
    assert hamming_distance(t, _shifted(t, dy, dx)) == 0.0
