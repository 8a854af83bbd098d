"""OrdinalCode extraction: the study's bits exactly, filter bank, line polarity, errors."""

from __future__ import annotations

import csv
import importlib
import math
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from identity import params
from identity.errors import InvalidImageError
from identity.ordinal import (
    DEFAULT_ORDINAL_PARAMS,
    ORIENTATIONS_RAD,
    OrdinalParams,
    extract_ordinal,
    ordinal_bank,
)
from identity.synthetic import SyntheticPalms

PALMS = SyntheticPalms(seed=11)


def _study() -> ModuleType:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    return importlib.import_module("ordinal_fusion")


def _chosen(of: ModuleType) -> object:
    """The setting benchmarks/results/ordinal_fusion.json "chosen" names."""
    return of.OrdinalParams(work_size=128, sigma_long=3.0, sigma_short=1.0, size_factor=2.5)


def test_defaults_are_the_chosen_setting() -> None:
    p = DEFAULT_ORDINAL_PARAMS
    assert (p.work_size, p.sigma_long, p.sigma_short, p.size_factor) == (128, 3.0, 1.0, 2.5)
    assert tuple(ORIENTATIONS_RAD) == (0.0, math.pi / 6, math.pi / 3)
    assert params.FUSION_WEIGHT_COMPCODE == 0.6


def test_bank_equals_the_study_and_has_zero_mean() -> None:
    of = _study()
    mine, theirs = ordinal_bank(DEFAULT_ORDINAL_PARAMS, 128), of.ordinal_bank(_chosen(of), 128)
    assert len(mine) == 3
    for k, t in zip(mine, theirs, strict=True):
        assert k.dtype == np.float32 and k.shape == (17, 17)  # half-side ceil(2.5 * 3) = 8
        assert np.array_equal(k, t)
        assert abs(float(k.sum())) < 1e-4
    # a 256 px ROI is filtered at the same physical scale: dx = 3 * 128 / 256 work px
    assert ordinal_bank(DEFAULT_ORDINAL_PARAMS, 256)[0].shape == (9, 9)
    mine[0][0, 0] = 99.0  # callers get copies, the cache is untouched
    assert ordinal_bank(DEFAULT_ORDINAL_PARAMS, 128)[0][0, 0] != 99.0


@pytest.mark.parametrize(("palm", "capture"), [(0, 0), (1, 3), (2, 1), (5, 2)])
def test_bits_equal_the_study_on_synthetic_rois(palm: int, capture: int) -> None:
    of = _study()
    roi = PALMS.capture(palm, capture)
    bits = extract_ordinal(roi)
    assert bits.dtype == np.bool_
    assert bits.shape == (len(params.FEATURE_ROTATIONS_DEG), 3, 32, 32)
    assert np.array_equal(bits, of.ordinal_code(roi, _chosen(of)))
    assert 0.2 < bits.mean() < 0.8  # a sign code, not constant


def test_bits_equal_the_study_on_another_roi_size() -> None:
    of = _study()
    roi = np.asarray(cv2.resize(PALMS.capture(3, 0), (160, 160),
                                interpolation=cv2.INTER_LINEAR), np.uint8)
    assert np.array_equal(extract_ordinal(roi), of.ordinal_code(roi, _chosen(of)))


@pytest.mark.realdata
def test_bits_equal_the_study_on_tongji_rois(tongji_dir: Path) -> None:
    of = _study()
    from identity.imageio import decode_image
    from identity.roi import extract_roi

    with (tongji_dir / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    for row in rows[:: len(rows) // 12][:12]:
        roi = extract_roi(decode_image((tongji_dir / row["path"]).read_bytes())).roi
        assert np.array_equal(extract_ordinal(roi), of.ordinal_code(roi, _chosen(of)))


def test_bit_is_set_where_the_line_along_theta_is_brighter() -> None:
    # one bright horizontal line (rows 61-62, cell row 15 of 4 px cells): along it, the
    # lobe along 0 rad is brighter than the lobe across, so OF(0) > 0 and the bit is set
    img = np.full((128, 128), 60, np.uint8)
    img[61:63] = 200
    bits = extract_ordinal(img, rotations_deg=(0.0,))
    assert bits[0, 0, 15, 4:-4].all()
    assert not bits[0, 0, 14, 4:-4].any()  # beside it the lobe across reaches the line
    # the same line vertical (columns 61-62): the lobe across 0 rad lies along it
    bits = extract_ordinal(np.ascontiguousarray(img.T), rotations_deg=(0.0,))
    assert not bits[0, 0, 4:-4, 15].any()


def test_rotations_and_grid_follow_the_arguments() -> None:
    roi = PALMS.capture(4, 0)
    bits = extract_ordinal(roi, rotations_deg=(0.0, 3.0), grid=16)
    assert bits.shape == (2, 3, 16, 16)
    assert not np.array_equal(bits[0], bits[1])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((128, 128), np.float32), np.zeros((128, 100), np.uint8),
     np.zeros((128, 128, 3), np.uint8), np.zeros((16, 16), np.uint8)],
)
def test_bad_roi_refused(bad: np.ndarray) -> None:
    with pytest.raises(InvalidImageError):
        extract_ordinal(bad)


def test_bad_params_refused() -> None:
    with pytest.raises(ValueError):
        OrdinalParams(work_size=0)
    with pytest.raises(ValueError):
        OrdinalParams(sigma_long=1.0, sigma_short=2.0)
    with pytest.raises(ValueError):
        ordinal_bank(DEFAULT_ORDINAL_PARAMS, 0)
