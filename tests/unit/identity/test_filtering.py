"""DFT filtering and compiled cell means: what the coders computed before, within rounding
(filtering) or bit for bit (cell means); their codes where no response is a rounding away
from a decision."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import cells, kernels
from identity.features import DEFAULT_FEATURE_PARAMS, extract_features, gabor_bank
from identity.filtering import SpectralBank
from identity.ordinal import DEFAULT_ORDINAL_PARAMS, extract_ordinal, ordinal_bank
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=5)


def _direct(img: np.ndarray, bank: list[np.ndarray]) -> np.ndarray:
    return np.stack([cv2.filter2D(img, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
                     for k in bank])


@pytest.mark.parametrize(("bank", "size"), [
    (gabor_bank(), 64), (ordinal_bank(DEFAULT_ORDINAL_PARAMS, 128), 128),
    (gabor_bank(), 9), (ordinal_bank(DEFAULT_ORDINAL_PARAMS, 128), 33),
    ([np.ones((1, 1), np.float32) * 2.0], 5),
])
def test_correlation_is_filter2d_with_a_reflected_border(bank: list[np.ndarray],
                                                         size: int) -> None:
    rng = np.random.default_rng(size)
    img = (rng.random((size, size)) * 255.0).astype(np.float32)
    img[: size // 2] += 40.0  # an edge, so the border handling shows
    got = SpectralBank(bank, size).correlate(img)
    want = _direct(img, bank)
    assert got.shape == want.shape and got.dtype == np.float32
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-5 * scale


def test_kernel_anchor_is_its_centre() -> None:
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, 4] = 1.0  # picks the pixel two to the right
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    got = SpectralBank([kernel], 8).correlate(img)[0]
    assert np.allclose(got[:, :6], img[:, 2:], atol=1e-4)
    assert np.allclose(got[:, 6:], img[:, [7, 6]], atol=1e-4)  # reflected: ...|67|76


@pytest.mark.parametrize("kernels_", [
    [], [np.ones((4, 4), np.float32)], [np.ones((3, 5), np.float32)],
    [np.ones((3, 3), np.float32), np.ones((5, 5), np.float32)], [np.ones(3, np.float32)],
])
def test_bad_banks_are_refused(kernels_: list[np.ndarray]) -> None:
    with pytest.raises(ValueError):
        SpectralBank(kernels_, 16)


def test_bad_size_and_images_are_refused() -> None:
    with pytest.raises(ValueError):
        SpectralBank([np.ones((3, 3), np.float32)], 0)
    bank = SpectralBank([np.ones((3, 3), np.float32)], 16)
    for bad in (np.zeros((16, 16), np.float64), np.zeros((16, 17), np.float32),
                np.zeros((8, 8), np.float32)):
        with pytest.raises(ValueError):
            bank.correlate(bad)


def _strided_means(maps: np.ndarray, grid: int, oy: int, ox: int) -> np.ndarray:
    """The cell means as numpy computed them before the compiled kernel: strided slices of
    the edge-padded maps added in float32, then scaled."""
    k, s0, s1 = maps.shape
    padded = np.pad(maps, ((0, 0), (0, oy), (0, ox)), mode="edge")[:, oy:oy + s0, ox:ox + s1]
    fy, fx = s0 // grid, s1 // grid
    total = np.zeros((k, grid, grid), np.float32)
    for y in range(fy):
        for x in range(fx):
            total += padded[:, y::fy, x::fx]
    return np.asarray(total * np.float32(1.0 / (fy * fx)), np.float32)


@pytest.mark.parametrize(("shape", "grid", "oy", "ox"), [
    ((8, 64, 64), 32, 0, 0), ((8, 64, 64), 32, 1, 1), ((3, 128, 128), 32, 2, 0),
    ((3, 128, 128), 32, 3, 3), ((2, 12, 20), 4, 2, 4), ((1, 5, 5), 1, 4, 0),
])
def test_block_means_equal_the_strided_sums_bit_for_bit(shape: tuple[int, int, int],
                                                        grid: int, oy: int, ox: int) -> None:
    maps = (np.random.default_rng(sum(shape)).standard_normal(shape) * 50).astype(np.float32)
    got = kernels.block_means(maps, grid, oy, ox)
    assert got.dtype == np.float32
    assert np.array_equal(got, _strided_means(maps, grid, oy, ox))


@pytest.mark.parametrize(("shape", "grid", "oy", "ox", "dtype"), [
    ((2, 64, 64), 32, 2, 0, np.float32), ((2, 64, 64), 32, 0, -1, np.float32),
    ((2, 60, 64), 32, 0, 0, np.float32), ((2, 64, 64), 32, 0, 0, np.float64),
    ((64, 64), 32, 0, 0, np.float32), ((2, 64, 64), 0, 0, 0, np.float32),
])
def test_block_means_refuse_what_they_would_read_out_of_bounds(
        shape: tuple[int, ...], grid: int, oy: int, ox: int, dtype: type) -> None:
    with pytest.raises(ValueError):
        kernels.block_means(np.zeros(shape, dtype), grid, oy, ox)


def test_pooling_moved_by_a_cell_or_more_still_reads_the_edge() -> None:
    maps = np.random.default_rng(3).random((2, 64, 64)).astype(np.float32)
    got = cells.pool_offsets(maps, 32, ((2, 3),))[0]  # beyond one 2 px cell: resize path
    assert np.allclose(got, _strided_means_any(maps, 32, 2, 3), atol=1e-5)


def _strided_means_any(maps: np.ndarray, grid: int, oy: int, ox: int) -> np.ndarray:
    k, s0, s1 = maps.shape
    padded = np.pad(maps, ((0, 0), (0, oy), (0, ox)), mode="edge")[:, oy:oy + s0, ox:ox + s1]
    return np.asarray(padded.reshape(k, grid, s0 // grid, grid, s1 // grid).mean(axis=(2, 4)),
                      np.float32)


def _pooled_direct(roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unrotated cell means of CompCode's and OrdinalCode's responses filtered directly."""
    p, op = DEFAULT_FEATURE_PARAMS, DEFAULT_ORDINAL_PARAMS
    work = cv2.resize(roi, (p.work_size, p.work_size), interpolation=cv2.INTER_AREA)
    gabor = _direct(work.astype(np.float32), gabor_bank(p))
    owork = cv2.resize(roi, (op.work_size, op.work_size), interpolation=cv2.INTER_AREA)
    ordinal = _direct(owork.astype(np.float32), ordinal_bank(op, roi.shape[0]))
    return (np.stack([cells.pool(m, p.grid_size) for m in gabor]),
            np.stack([cells.pool(m, p.grid_size) for m in ordinal]))


@pytest.mark.parametrize(("palm", "capture"), [(0, 0), (3, 2), (6, 1)])
def test_codes_equal_direct_filtering_wherever_no_decision_is_within_rounding(
        palm: int, capture: int) -> None:
    roi = PALMS.capture(palm, capture)
    gabor, ordinal = _pooled_direct(roi)
    code = extract_features(roi)
    winners = np.sort(gabor, axis=0)
    decided = (winners[1] - winners[0]) > 1e-3  # the minimum is not a rounding away from a tie
    want = np.argmin(gabor, axis=0)
    assert decided.mean() > 0.99
    table = np.array([(0, 0, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1), (1, 1, 0), (1, 0, 0)],
                     bool)  # Kong & Zhang's 3-bit code of orientation 0..5
    assert np.array_equal(np.moveaxis(code.code[0], 0, -1)[decided], table[want][decided])
    sure = np.abs(ordinal) > 1e-3
    assert sure.mean() > 0.99
    assert np.array_equal(extract_ordinal(roi)[0][sure], (ordinal > 0)[sure])
