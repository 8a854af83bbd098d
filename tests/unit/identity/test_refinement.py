"""Half-cell refinement variants: pooling on a moved grid, the template layout and the
coarse-to-fine search of the fused matcher."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import cells, params
from identity.errors import TemplateFormatError
from identity.features import FeatureParams, extract_features
from identity.matcher import NO_MATCH_DISTANCE, PreparedProbe, ReferenceSet
from identity.synthetic import SyntheticPalms
from identity.template import Template

PALMS = SyntheticPalms(7)
PLAIN = FeatureParams(refine_offsets_cells=(), refine_shears=())


def _reference_pool(maps: np.ndarray, grid: int, oy: int, ox: int) -> np.ndarray:
    s0, s1 = maps.shape[1:]
    padded = np.pad(maps, ((0, 0), (0, oy), (0, ox)), mode="edge")[:, oy : oy + s0, ox : ox + s1]
    return np.stack([cv2.resize(np.ascontiguousarray(m), (grid, grid),
                                interpolation=cv2.INTER_AREA) for m in padded])


@pytest.mark.parametrize(("side", "grid", "oy", "ox"),
                         [(64, 32, 1, 0), (64, 32, 0, 1), (128, 32, 2, 2), (60, 32, 1, 1)])
def test_moved_pooling_is_the_area_mean_of_the_moved_window(side: int, grid: int, oy: int,
                                                            ox: int) -> None:
    maps = np.random.default_rng(side + oy).random((5, side, side)).astype(np.float32)
    got = cells.pool_offsets(maps, grid, ((oy, ox),))[0]
    assert got.shape == (5, grid, grid) and got.dtype == np.float32
    assert np.allclose(got, _reference_pool(maps, grid, oy, ox), atol=1e-5)
    assert np.array_equal(cells.pool(maps[0], grid, oy, ox), got[0])


def test_offsets_must_be_whole_work_pixels_within_a_cell() -> None:
    assert cells.offsets_px(((0.5, 0.0), (0.5, 0.5)), 64, 32) == ((1, 0), (1, 1))
    assert cells.offsets_px(((0.5, 0.25),), 128, 32) == ((2, 1),)
    for bad in (((0.25, 0.0),), ((1.0, 0.0),), ((-0.5, 0.0),)):
        with pytest.raises(ValueError, match="whole number"):
            cells.offsets_px(bad, 64, 32)


def test_cells_of_a_moved_grid_past_the_edge_are_outside() -> None:
    cover = np.ones((64, 64), np.float32)
    assert cells.inside(cover, 32).all()
    down = cells.inside(cover, 32, 1, 0)
    assert not down[-1].any() and down[:-1].all()
    both = cells.inside(cover, 32, 1, 1)
    assert not both[-1].any() and not both[:, -1].any() and both[:-1, :-1].all()


def test_the_layout_is_explicit_and_in_memory_only() -> None:
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    n_off = len(params.FEATURE_REFINE_OFFSETS_CELLS) + len(params.FEATURE_REFINE_SHEARS)
    fresh = extract_features(PALMS.capture(0, 0)).to_template()
    assert (fresh.variants, fresh.rotation_variants, fresh.refine_offsets) == (
        n_rot * (1 + n_off), n_rot, n_off)
    # bytes never carry it: a serialised template is rotations only, whatever its count
    back = Template.from_bytes(fresh.to_bytes())
    assert back == fresh.rotations_only() and not back.refined
    assert back.rotation_variants == back.variants == n_rot
    # other extractor settings: the count alone does not decide
    eight = extract_features(PALMS.capture(0, 0), FeatureParams(rotations_deg=(0.0, 3.0)))
    t8 = eight.to_template()
    assert (t8.variants, t8.rotation_variants, t8.refine_offsets) == (2 * (1 + n_off), 2,
                                                                      n_off)
    assert PreparedProbe(t8).alignments == 2 * (2 * params.MATCH_MAX_SHIFT + 1) ** 2
    assert t8.rotations_only().variants == 2
    twelve = extract_features(PALMS.capture(0, 0), FeatureParams(
        rotations_deg=tuple(float(a) for a in range(12)), refine_offsets_cells=(),
        refine_shears=()))
    t12 = twelve.to_template()
    assert not t12.refined and t12.rotations_only() is t12 and t12.rotation_variants == 12
    with pytest.raises(TemplateFormatError, match="refinement grids"):
        Template(fresh.grid, fresh.code, fresh.mask, fresh.variants, fresh.ordinal, 4)


def test_no_qualifying_whole_cell_alignment_is_no_match_even_refined() -> None:
    """Refinement works around the best whole-cell alignment; with none of enough overlap
    there is nothing to refine around, and the answer stays 'no match'."""
    probe = extract_features(PALMS.capture(1, 0)).to_template()
    ref = extract_features(PALMS.capture(1, 1)).to_template()
    empty = Template.from_bits(ref.code_bits(0), np.zeros_like(ref.mask_bits(0)),
                               ref.ordinal_bits(0))
    refs = ReferenceSet.from_templates([empty, ref], fused=True)
    d = PreparedProbe(probe, fused=True).distances(refs)
    assert d[0] == NO_MATCH_DISTANCE and d[1] < 0.4


def test_a_refinement_variant_is_the_roi_moved_by_half_a_cell() -> None:
    """Variant R + o of the ROI (rotation 0, grid moved down by half a cell) equals the
    unrotated code of the ROI moved up by half a cell (2 px of a 128 px ROI), away from
    the borders the two treat differently."""
    roi = PALMS.capture(3, 0)
    code = extract_features(roi)
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    o = params.FEATURE_REFINE_OFFSETS_CELLS.index((0.5, 0.0))
    moved = np.ascontiguousarray(np.vstack([roi[2:], np.repeat(roi[-1:], 2, axis=0)]))
    shifted = extract_features(moved, PLAIN)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    v = n_rot + o
    agree = (code.code[v][inner] == shifted.code[0][inner]).mean()
    agree_ord = (code.ordinal[v][inner] == shifted.ordinal[0][inner]).mean()
    assert agree > 0.97 and agree_ord > 0.97
    # and it is not simply the unmoved code
    assert (code.code[0][inner] == shifted.code[0][inner]).mean() < agree - 0.1


def _half_cell_pair(palm: int) -> tuple[Template, Template]:
    """(reference, probe): the probe is the reference's capture moved by 1.5 cells."""
    roi = PALMS.capture(palm, 0)
    moved = np.ascontiguousarray(np.hstack([roi[:, 6:], np.repeat(roi[:, -1:], 6, axis=1)]))
    return extract_features(roi).to_template(), extract_features(moved).to_template()


def test_refinement_only_lowers_the_fused_distance_and_finds_half_cells() -> None:
    refs, probes = zip(*(_half_cell_pair(p) for p in range(4)), strict=True)
    others = [extract_features(PALMS.capture(p, 1)).to_template() for p in range(4, 10)]
    ref_set = ReferenceSet.from_templates([*refs, *others], fused=True)
    gains = []
    for i, probe in enumerate(probes):
        refined = PreparedProbe(probe, fused=True).distances(ref_set)
        plain = PreparedProbe(probe.rotations_only(), fused=True).distances(ref_set)
        assert (refined <= plain).all()
        gains.append(plain[i] - refined[i])
    # a 1.5-cell move falls between whole-cell shifts; the refinement recovers it
    assert min(gains) > 0.01


def test_compcode_only_matching_ignores_the_refinement_variants() -> None:
    ref, probe = _half_cell_pair(2)
    refs = ReferenceSet.from_templates([ref, probe.rotations_only()])
    full = PreparedProbe(probe).distances(refs)
    assert np.array_equal(full, PreparedProbe(probe.rotations_only()).distances(refs))
    assert PreparedProbe(probe).alignments == PreparedProbe(probe.rotations_only()).alignments
