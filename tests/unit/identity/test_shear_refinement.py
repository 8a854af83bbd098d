"""Sheared refinement variants: cell means on a sheared grid, which cells stay inside, the
variant layout, and what the fused matcher gains on a skewed capture."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import cells, params
from identity.features import FeatureParams, extract_features
from identity.matcher import PreparedProbe, ReferenceSet
from identity.synthetic import SyntheticPalms
from identity.template import MAX_VARIANTS, Template, TemplateFormatError

PALMS = SyntheticPalms(11)


def _pool_sheared(maps: np.ndarray, grid: int, shear: float) -> np.ndarray:
    """Cell means on the grid sheared by ``shear`` (float32 ``(K, grid, grid)``)."""
    return cells.pool_warped(maps, grid, (cells.shear_warp(shear),))[0]


def _inside_sheared(cover: np.ndarray, grid: int, shear: float) -> np.ndarray:
    """The cells of that grid lying wholly on image content (bool ``(grid, grid)``)."""
    return cells.inside_warped(cover, grid, cells.shear_warp(shear))
UNSHEARED = FeatureParams(refine_shears=())


def _sheared_roi(roi: np.ndarray, shear: float) -> np.ndarray:
    """``roi`` skewed about its centre: the pixel at (x, y) shows (x + shear * (y - m), y)."""
    side = roi.shape[0]
    m = (side - 1) / 2.0
    inverse = np.array([[1.0, shear, -shear * m], [0.0, 1.0, 0.0]])
    return np.ascontiguousarray(cv2.warpAffine(
        roi, inverse, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT))


@pytest.mark.parametrize(("side", "grid"), [(64, 32), (128, 32), (64, 16), (96, 32), (32, 32),
                                            (160, 32)])
def test_no_shear_is_the_plain_cell_mean(side: int, grid: int) -> None:
    """Even and odd cells (2, 4, 3, 1, 5 px): OpenCV centres odd boxes on the pixel."""
    maps = np.random.default_rng(side).random((8, side, side)).astype(np.float32)
    got = _pool_sheared(maps, grid, 0.0)
    assert got.shape == (8, grid, grid) and got.dtype == np.float32
    assert np.allclose(got, np.stack([cells.pool(m, grid) for m in maps]), atol=1e-5)
    assert _inside_sheared(np.ones((side, side), np.float32), grid, 0.0).all()


def test_a_sheared_cell_reads_the_map_at_its_moved_centre() -> None:
    """On a map that is a ramp in x, each cell's mean is the x of its sheared centre."""
    side, grid, shear = 64, 32, 0.05
    xs = np.tile(np.arange(side, dtype=np.float32), (side, 1))
    got = _pool_sheared(xs[None], grid, shear)[0]
    centres = (np.arange(grid) + 0.5) * 2 - 0.5
    m = (side - 1) / 2.0
    want = centres[None, :] + shear * (centres[:, None] - m)
    inner = (slice(4, -4), slice(4, -4))  # the reflected border bends the ramp
    assert np.allclose(got[inner], want[inner], atol=1e-3)


def test_cells_sheared_past_the_image_are_outside() -> None:
    cover = np.ones((64, 64), np.float32)
    right = _inside_sheared(cover, 32, 0.05)
    left = _inside_sheared(cover, 32, -0.05)
    # rows far from the centre slide out on one side: the corners, mirrored for -shear
    assert not right[-1, -1] and not right[0, 0] and right[0, -1] and right[-1, 0]
    assert np.array_equal(left, right[:, ::-1])
    assert right[12:20, 1:-1].all()  # rows near the centre move by under half a pixel
    # a rotated cover (border brought in) also marks its corners outside
    turned = cv2.warpAffine(cover, cv2.getRotationMatrix2D((31.5, 31.5), 4.5, 1.0), (64, 64),
                            borderValue=0.0)
    assert _inside_sheared(turned, 32, 0.05).sum() < right.sum()


def test_maps_that_do_not_hold_the_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="do not hold"):
        _pool_sheared(np.zeros((2, 60, 60), np.float32), 32, 0.05)
    with pytest.raises(ValueError, match="does not hold"):
        _inside_sheared(np.ones((60, 60), np.float32), 32, 0.05)


def test_the_sheared_variants_follow_the_half_cell_ones() -> None:
    roi = PALMS.capture(0, 0)
    code = extract_features(roi)
    n_rot = len(params.FEATURE_ROTATIONS_DEG)
    n_half = len(params.FEATURE_REFINE_OFFSETS_CELLS)
    n_ref = n_half + len(params.FEATURE_REFINE_SHEARS)
    assert code.refine_offsets == n_ref and code.code.shape[0] == n_rot * (1 + n_ref)
    plain = extract_features(roi, UNSHEARED)
    for r in range(n_rot):  # rotations and half-cell grids are unchanged by the shears
        assert np.array_equal(code.code[r], plain.code[r])
        first, first_plain = n_rot + r * n_ref, n_rot + r * n_half
        assert np.array_equal(code.code[first:first + n_half],
                              plain.code[first_plain:first_plain + n_half])
        assert np.array_equal(code.ordinal[first:first + n_half],
                              plain.ordinal[first_plain:first_plain + n_half])


@pytest.mark.parametrize("palm", range(3))
def test_a_sheared_variant_is_close_to_the_code_of_the_sheared_roi(palm: int) -> None:
    """Variant (rotation 0, shear s) samples the responses on the grid sheared by s, i.e.
    the ROI skewed by -s; the filters are not skewed, so it agrees with re-coding the skewed
    ROI on most bits, and better than the unsheared code does."""
    roi = PALMS.capture(palm, 1)
    code = extract_features(roi)
    n_rot, n_half = len(params.FEATURE_ROTATIONS_DEG), len(params.FEATURE_REFINE_OFFSETS_CELLS)
    for k, shear in enumerate(params.FEATURE_REFINE_SHEARS):
        v = n_rot + n_half + k
        again = extract_features(_sheared_roi(roi, shear), UNSHEARED)
        valid = code.mask[v] & again.mask[0]
        agree = (code.code[v] == again.code[0])[:, valid].mean()
        agree_ord = (code.ordinal[v] == again.ordinal[0])[:, valid].mean()
        unmoved = (code.code[0] == again.code[0])[:, valid].mean()
        assert agree > 0.85 and agree_ord > 0.85, (agree, agree_ord)
        assert agree > unmoved + 0.03, (agree, unmoved)


def test_the_shears_lower_the_distance_of_a_skewed_capture() -> None:
    """A capture skewed by the shear step is matched closer to its enrolment with the
    sheared variants than without; the distance never rises (the matcher keeps the smaller);
    other palms stay far."""
    gains = []
    shear = params.FEATURE_REFINE_SHEARS[0]
    for palm in range(4):
        enrolled = extract_features(PALMS.capture(palm, 0)).to_template()
        others = [extract_features(PALMS.capture(p, 0)).to_template() for p in range(4, 8)]
        refs = ReferenceSet.from_templates([enrolled, *others], fused=True)
        skewed = _sheared_roi(PALMS.capture(palm, 0), -shear)
        with_shears = PreparedProbe(extract_features(skewed).to_template(), fused=True)
        without = PreparedProbe(extract_features(skewed, UNSHEARED).to_template(), fused=True)
        d_with, d_without = with_shears.distances(refs), without.distances(refs)
        assert d_with[0] <= d_without[0]
        assert (d_with[1:] > 0.35).all()
        gains.append(d_without[0] - d_with[0])
    assert np.mean(gains) > 0.01, gains


def test_the_sheared_variants_mask_cells_sheared_past_the_image() -> None:
    """A sheared cell whose box reads past the ROI (reflected responses) is never valid."""
    code = extract_features(PALMS.capture(2, 0))
    n_rot, n_half = len(params.FEATURE_ROTATIONS_DEG), len(params.FEATURE_REFINE_OFFSETS_CELLS)
    side = params.FEATURE_WORK_SIZE
    for k, shear in enumerate(params.FEATURE_REFINE_SHEARS):
        inside = _inside_sheared(np.ones((side, side), np.float32),
                                      params.FEATURE_GRID_SIZE, shear)
        mask = code.mask[n_rot + n_half + k]  # rotation 0
        assert not (mask & ~inside).any()
        assert not inside.all() and mask.sum() > 0.8 * mask.size


def test_a_probe_keeps_its_refinements_in_memory_only() -> None:
    probe = extract_features(PALMS.capture(1, 0)).to_template()
    assert probe.variants > MAX_VARIANTS  # more than a stored template may hold
    stored = Template.from_bytes(probe.to_bytes())
    assert stored == probe.rotations_only() and not stored.refined


def test_the_variant_limits() -> None:
    """Stored bytes hold at most MAX_VARIANTS rotations, even when the rest is consistent;
    in memory a probe holds at most MAX_VARIANTS rotations and 255 variants in all."""
    probe = extract_features(PALMS.capture(1, 0)).to_template()
    one = probe.rotations_only()
    n = MAX_VARIANTS + 1
    header = bytearray(one.to_bytes()[:23])
    code_1, mask_1 = len(one.code) // one.variants, len(one.mask) // one.variants
    header[6] = n
    header[11:15] = (n * code_1).to_bytes(4, "big")
    header[15:19] = (n * mask_1).to_bytes(4, "big")
    header[19:23] = (n * code_1).to_bytes(4, "big")
    forged = bytes(header) + one.code[:code_1] * n + one.mask[:mask_1] * n + \
        one.ordinal[:code_1] * n
    with pytest.raises(TemplateFormatError, match="out of range"):
        Template.from_bytes(forged)
    with pytest.raises(TemplateFormatError, match="out of range"):
        Template(one.grid, one.code[:code_1] * n, one.mask[:mask_1] * n, n)
    fine = Template(one.grid, one.code[:code_1] * n, one.mask[:mask_1] * n, n,
                    refine_offsets=n - 1)  # one rotation, 16 refinements: a probe
    assert fine.rotation_variants == 1
    many = 256  # one rotation and 255 refinements: over the in-memory limit
    with pytest.raises(TemplateFormatError, match="out of range"):
        Template(one.grid, one.code[:code_1] * many, one.mask[:mask_1] * many, many,
                 refine_offsets=many - 1)
