"""ROI extraction on the real palm sets (read from STOREFRONT_DATA_DIR, never copied).

Rates measured with the current parameters (see identity/params.py, "ROI"):
Tongji ROIs 6000/6000 pass through; PolyU-MS ROI bands 240/240 pass through;
PolyU-MS NIR whole hands 1192/1200 give a ROI (FTA 0.7%, all "palm out of frame").
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from identity.errors import AcquisitionError
from identity.params import ROI_SIZE
from identity.roi import extract_roi

pytestmark = pytest.mark.realdata

POLYU_HAND_MIN_ROI_RATE = 0.95  # measured 0.993 on all 1200 images


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


def test_polyu_whole_hands_mostly_give_rois(data_dir: Path) -> None:
    folder = data_dir / "palm" / "polyu-ms-nir-hand"
    paths = sorted(folder.glob("*/*.jpg"))[::8]
    if not paths:
        pytest.skip(f"no images under {folder}")
    acquired = 0
    for path in paths:
        try:
            result = extract_roi(_read(path))
        except AcquisitionError:
            continue
        assert not result.passthrough, path
        assert result.roi.shape == (ROI_SIZE, ROI_SIZE)
        acquired += 1
    assert acquired / len(paths) >= POLYU_HAND_MIN_ROI_RATE
