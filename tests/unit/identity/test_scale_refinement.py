"""Scaled refinement variants of ROIs located in whole hands: cell means on a scaled grid,
which cells stay inside, the variant layout, which ROIs get them, and what the fused
matcher gains on a capture whose scale was misjudged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import cells, params
from identity.evaluate_run import Acquired, Capture, _extract
from identity.features import (
    DEFAULT_FEATURE_PARAMS,
    LOCATED_FEATURE_PARAMS,
    FeatureParams,
    extract_features,
    feature_params,
)
from identity.matcher import PreparedProbe, ReferenceSet
from identity.service import template_from_image
from identity.synthetic import SyntheticPalms
from identity.template import Template
from tests.unit.identity.test_roi import drawn_hand

PALMS = SyntheticPalms(23)
SCALES = params.FEATURE_REFINE_SCALES_LOCATED


def _scaled_roi(roi: np.ndarray, scale: float) -> np.ndarray:
    """``roi`` magnified by ``scale`` about its centre (reflected border)."""
    side = roi.shape[0]
    m = (side - 1) / 2.0
    matrix = cv2.getRotationMatrix2D((m, m), 0.0, scale)
    return np.ascontiguousarray(cv2.warpAffine(roi, matrix, (side, side),
                                               flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REFLECT))


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_scale_one_is_the_plain_cell_mean() -> None:
    maps = np.random.default_rng(4).random((8, 64, 64)).astype(np.float32)
    got = cells.pool_warped(maps, 32, (cells.scale_warp(1.0),))[0]
    assert np.allclose(got, np.stack([cells.pool(m, 32) for m in maps]), atol=1e-5)


def test_a_scaled_cell_reads_the_map_at_its_moved_centre() -> None:
    """On ramps in x and in y, each cell's mean is the coordinate of its scaled centre."""
    side, grid, scale = 64, 32, 1.07
    ramp = np.tile(np.arange(side, dtype=np.float32), (side, 1))
    got_x, got_y = cells.pool_warped(np.stack([ramp, ramp.T]), grid,
                                     (cells.scale_warp(scale),))[0]
    centres = (np.arange(grid) + 0.5) * 2 - 0.5
    m = (side - 1) / 2.0
    want = m + scale * (centres - m)
    inner = (slice(5, -5), slice(5, -5))  # the reflected border bends the ramps
    # (OpenCV's remap reads positions to 1/32 px)
    assert np.allclose(got_x[inner], np.broadcast_to(want[None, :], got_x.shape)[inner],
                       atol=1 / 32)
    assert np.allclose(got_y[inner], np.broadcast_to(want[:, None], got_y.shape)[inner],
                       atol=1 / 32)
    assert not np.allclose(got_x[inner], np.broadcast_to(centres[None, :], got_x.shape)[inner],
                           atol=0.5)  # and not where the unscaled centres are


def test_cells_scaled_past_the_image_are_outside() -> None:
    cover = np.ones((64, 64), np.float32)
    spread = cells.inside_warped(cover, 32, cells.scale_warp(1.07))
    shrunk = cells.inside_warped(cover, 32, cells.scale_warp(0.93))
    assert shrunk.all()  # a shrunk grid stays on the image
    assert not spread[0].any() and not spread[-1].any() and not spread[:, 0].any()
    assert spread[2:-2, 2:-2].all()


@pytest.mark.parametrize("bad", [0.0, -1.07, float("nan")])
def test_a_scale_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        cells.scale_warp(bad)


def test_a_malformed_warp_is_refused() -> None:
    with pytest.raises(ValueError, match="a, b, c, d"):
        cells.pool_warped(np.zeros((1, 64, 64), np.float32), 32, ((1.0, 0.0, 1.0),))  # type: ignore[arg-type]


def test_the_scaled_variants_follow_the_sheared_ones() -> None:
    roi = PALMS.capture(0, 0)
    plain, located = extract_features(roi), extract_features(roi, LOCATED_FEATURE_PARAMS)
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    n_plain = plain.refine_offsets
    assert located.refine_offsets == n_plain + len(SCALES)
    assert located.code.shape[0] == n_rot * (1 + n_plain + len(SCALES))
    for r in range(n_rot):  # the rotations and the other refinements are unchanged
        assert np.array_equal(located.code[r], plain.code[r])
        first, first_plain = n_rot + r * located.refine_offsets, n_rot + r * n_plain
        for a in ("code", "mask", "ordinal"):
            assert np.array_equal(getattr(located, a)[first:first + n_plain],
                                  getattr(plain, a)[first_plain:first_plain + n_plain])


@pytest.mark.parametrize("palm", range(3))
def test_a_scaled_variant_is_close_to_the_code_of_the_scaled_roi(palm: int) -> None:
    """Variant (rotation 0, scale k) samples the responses on the grid scaled by k, i.e.
    the ROI magnified by 1 / k; the filters keep their size, so it agrees with re-coding
    the magnified ROI on most bits, and better than the unscaled code does."""
    roi = PALMS.capture(palm, 1)
    code = extract_features(roi, LOCATED_FEATURE_PARAMS)
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    first_scale = n_rot + code.refine_offsets - len(SCALES)
    unrefined = FeatureParams(refine_offsets_cells=(), refine_shears=())
    for k, scale in enumerate(SCALES):
        v = first_scale + k
        again = extract_features(_scaled_roi(roi, 1.0 / scale), unrefined)
        valid = code.mask[v] & again.mask[0]
        agree = (code.code[v] == again.code[0])[:, valid].mean()
        agree_ord = (code.ordinal[v] == again.ordinal[0])[:, valid].mean()
        unmoved = (code.code[0] == again.code[0])[:, valid].mean()
        assert agree > 0.8 and agree_ord > 0.8, (agree, agree_ord)
        assert agree > unmoved + 0.05, (agree, unmoved)


def test_the_scales_lower_the_distance_of_a_misjudged_scale() -> None:
    """A capture magnified by 7 % (the ROI's scale misjudged) is matched closer to its
    enrolment with the scaled variants; the distance never rises; other palms stay far."""
    gains = []
    for palm in range(4):
        enrolled = extract_features(PALMS.capture(palm, 0)).to_template()
        others = [extract_features(PALMS.capture(p, 0)).to_template() for p in range(4, 8)]
        refs = ReferenceSet.from_templates([enrolled, *others], fused=True)
        magnified = _scaled_roi(PALMS.capture(palm, 0), 1.07)
        with_scales = PreparedProbe(
            extract_features(magnified, LOCATED_FEATURE_PARAMS).to_template(), fused=True)
        without = PreparedProbe(extract_features(magnified).to_template(), fused=True)
        d_with, d_without = with_scales.distances(refs), without.distances(refs)
        assert d_with[0] <= d_without[0]
        assert (d_with[1:] > 0.35).all()
        gains.append(d_without[0] - d_with[0])
    assert np.mean(gains) > 0.02, gains


def test_only_located_rois_get_the_scaled_variants() -> None:
    assert feature_params(True) is DEFAULT_FEATURE_PARAMS
    assert feature_params(False) is LOCATED_FEATURE_PARAMS
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    as_roi = template_from_image(_png(PALMS.capture(1, 0)))
    whole = template_from_image(_png(drawn_hand(3)))
    assert as_roi.variants == n_rot * (1 + len(DEFAULT_FEATURE_PARAMS.refine_warps)
                                       + len(params.FEATURE_REFINE_OFFSETS_CELLS))
    assert whole.variants == as_roi.variants + n_rot * len(SCALES)
    # the evaluation extracts alike
    out = Acquired()
    cap = Capture(path=None, identity="a", session="1", capture="1", line=2)  # type: ignore[arg-type]
    _extract(cap, _png(drawn_hand(3)), out)
    assert out.templates == [whole]


def test_stored_templates_do_not_change() -> None:
    """The scaled variants are probe-side only: what is stored holds the rotations."""
    whole = template_from_image(_png(drawn_hand(5)))
    stored = Template.from_bytes(whole.to_bytes())
    assert stored == whole.rotations_only() and not stored.refined
    assert stored.variants == len(params.FEATURE_ROTATIONS_DEG)


def _reaches_past(grid: int, work: int, angle_deg: float, scale: float) -> np.ndarray:
    """From the geometry alone: the cells (bool ``(grid, grid)``) of the grid scaled by
    ``scale`` about the centre whose unscaled ``work / grid`` px box reaches past the work
    image rotated by ``angle_deg`` (past its frame, or onto what the rotation brought in)."""
    cell, half = work / grid, work / 2.0 + 1e-9
    centres = ((np.arange(grid) + 0.5) * cell - work / 2.0) * scale
    u = np.linspace(-cell / 2.0, cell / 2.0, 5)
    px, py = np.broadcast_arrays(centres[None, :, None, None] + u[None, None, None, :],
                                 centres[:, None, None, None] + u[None, None, :, None])
    t = np.radians(angle_deg)
    rx, ry = np.cos(t) * px - np.sin(t) * py, np.sin(t) * px + np.cos(t) * py
    on = (np.abs(px) <= half) & (np.abs(py) <= half) & (np.abs(rx) <= half) & (
        np.abs(ry) <= half)
    return np.asarray(~on.all(axis=(2, 3)))


def test_the_scaled_variants_mask_cells_past_the_rotated_image() -> None:
    """Every rotation's scaled variants leave out the cells the geometry puts past the
    rotated work image (their content would be the reflected border), and keep almost all
    of the others (a textured capture is valid everywhere on the image)."""
    code = extract_features(PALMS.capture(2, 0), LOCATED_FEATURE_PARAMS)
    p, n_rot = LOCATED_FEATURE_PARAMS, len(params.FEATURE_ROTATIONS_DEG)
    o = code.refine_offsets
    for r, angle in enumerate(p.rotations_deg):
        for k, scale in enumerate(SCALES):
            mask = code.mask[n_rot + r * o + o - len(SCALES) + k]  # rotation r, scale k
            past = _reaches_past(p.grid_size, p.work_size, angle, scale)
            assert past.any() == (scale > 1.0 or angle != 0.0)
            assert not (mask & past).any(), (angle, scale)
            assert mask.sum() >= 0.97 * (~past).sum(), (angle, scale, mask.sum(), (~past).sum())


@pytest.mark.parametrize("bad", [float("inf"), -float("inf")])
def test_an_infinite_scale_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        cells.scale_warp(bad)
    with pytest.raises(ValueError, match="finite"):
        extract_features(PALMS.capture(0, 0), FeatureParams(refine_scales=(bad,)))


@pytest.mark.parametrize("warp", [(float("nan"), 0.0, 0.0, 1.0), (1.0, float("inf"), 0.0, 1.0)])
def test_a_warp_that_is_not_finite_is_refused(warp: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="finite"):
        cells.pool_warped(np.zeros((1, 64, 64), np.float32), 32, (warp,))
    with pytest.raises(ValueError, match="finite"):
        cells.inside_warped(np.ones((64, 64), np.float32), 32, warp)
