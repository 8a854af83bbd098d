"""ROI extraction on the real palm sets (read from STOREFRONT_DATA_DIR, never copied).

Rates measured with the current parameters (see identity/params.py, "ROI"):
Tongji ROIs pass through; failure to acquire (FTA) on whole hands (key-point frames
on contact and cut-finger hands, inscribed circle on whole hands, no fallback from one
to the other): polyu-ms-nir-hand 7/1200 ("fingers closed or palm out of frame": no
plausible valley pair), coep-hand 0/305, contactless-phone-hand 0/86,
nir-contactless-hand 0/50 (1/50 before the key-point square grew from 0.765 to 0.875 x d
on 2026-12-02: palm nir1, 53 % of the smaller ROI saturated).
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
    "polyu-ms-nir-hand": 0.01,  # measured 0.006 (7 of 1200)
    "coep-hand": 0.02,  # measured 0.000
    "contactless-phone-hand": 0.05,  # measured 0.000
    "nir-contactless-hand": 0.05,  # measured 0.000 (0.020 with the smaller key square)
}


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
    # Every image: the failures cluster in a few palms, so a sample of the set can
    # misstate the rate (every 8th PolyU frame held 2 of the 7 failures: 1.3 %).
    paths = [folder / row["path"] for row in rows]
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
