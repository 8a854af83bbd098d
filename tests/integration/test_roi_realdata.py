"""ROI extraction on the real palm sets (read from STOREFRONT_DATA_DIR, never copied).

Rates measured with the current parameters (see identity/params.py, "ROI"):
Tongji ROIs pass through; failure to acquire (FTA) on whole hands (key-point frames
on contact and cut-finger hands, inscribed circle on whole hands): polyu-ms-nir-hand
1/1200 ("palm out of frame"), coep-hand 0/305, contactless-phone-hand 2/86 ("palm out
of frame"), nir-contactless-hand 0/50 (the key-point ROI of palm nir1 lies on its
over-exposed centre in 4 captures; their circle frame, tried next, passes).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from identity.errors import AcquisitionError
from identity.params import ROI_SIZE
from identity.roi import extract_roi

pytestmark = pytest.mark.realdata

# Largest FTA accepted per whole-hand set (measured value in the comment); the issue's
# targets are FTA <= 1% (PolyU), <= 2% (COEP) and <= 5% (contactless sets).
MAX_FTA = {
    "polyu-ms-nir-hand": 0.01,  # measured 0.001 (1 of 1200; every 8th image checked here)
    "coep-hand": 0.02,  # measured 0.000
    "contactless-phone-hand": 0.05,  # measured 0.023 (2 of 86, "palm out of frame")
    "nir-contactless-hand": 0.05,  # measured 0.000
}
SAMPLE_STEP = {"polyu-ms-nir-hand": 8}


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, f"unreadable {path}"
    return image


def test_tongji_rois_pass_through(tongji_dir: Path) -> None:
    identities = sorted(p for p in tongji_dir.iterdir() if p.is_dir())[:5]
    paths = [path for identity in identities for path in sorted(identity.glob("*.png"))]
    assert len(paths) == 100
    for path in paths:
        result = extract_roi(_read(path))
        assert result.passthrough, path
        assert result.roi.shape == (ROI_SIZE, ROI_SIZE)


@pytest.mark.parametrize("name", sorted(MAX_FTA))
def test_whole_hand_sets_stay_within_their_fta(data_dir: Path, name: str) -> None:
    folder = data_dir / "palm" / name
    with (folder / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [folder / row["path"] for row in rows][:: SAMPLE_STEP.get(name, 1)]
    assert paths, f"no images listed in {folder / 'manifest.csv'}"
    failures: list[str] = []
    for path in paths:
        try:
            result = extract_roi(_read(path))
        except AcquisitionError as error:
            failures.append(f"{path.name}: {error.reason}")
            continue
        assert not result.passthrough, path
        assert result.roi.shape == (ROI_SIZE, ROI_SIZE)
    assert len(failures) / len(paths) <= MAX_FTA[name], failures
