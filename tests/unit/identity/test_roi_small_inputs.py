"""Pass-through ROIs smaller than ROI_SIZE: the "blurred" gate measures the capture at its
own side, not the interpolated enlargement (identity.roi_quality.finish_roi)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from identity import params as P
from identity.errors import AcquisitionError
from identity.roi import extract_roi
from identity.roi_quality import finish_roi
from identity.synthetic import SyntheticPalms


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("side", [48, 64, 96])
def test_sharp_small_palm_rois_pass_through(side: int) -> None:
    palms = SyntheticPalms(11)
    for palm in range(3):
        small = _shrunk(palms.capture(palm, 0), side)
        result = extract_roi(small)
        assert result.passthrough
        assert result.roi.shape == (P.ROI_SIZE, P.ROI_SIZE)
        assert result.sharpness >= P.ROI_MIN_SHARPNESS


def test_the_enlarged_copy_measures_far_less_sharp_than_the_capture() -> None:
    """The reason for measuring at the capture's side: enlarging a 48 px ROI to 128 px
    divides its variance of the Laplacian many times over (interpolation, not blur)."""
    small = _shrunk(SyntheticPalms(11).capture(0, 0), 48)
    enlarged = cv2.resize(small, (P.ROI_SIZE, P.ROI_SIZE), interpolation=cv2.INTER_LINEAR)
    _, on_enlarged, _ = finish_roi(enlarged, None)
    _, at_capture_side, _ = finish_roi(enlarged, None, native_side=48)
    assert at_capture_side > 8.0 * on_enlarged


def test_a_featureless_small_roi_is_still_refused() -> None:
    flat = np.full((64, 64), 150, np.uint8)
    flat[::7, :] = 154  # faint straight rows: no palm, no sharp detail
    with pytest.raises(AcquisitionError):
        extract_roi(cv2.GaussianBlur(flat, (0, 0), 3.0))


def test_full_size_rois_are_measured_as_before() -> None:
    roi = SyntheticPalms(11).capture(1, 0)
    assert roi.shape == (P.ROI_SIZE, P.ROI_SIZE)
    plain = finish_roi(roi, None)[1]
    assert finish_roi(roi, None, native_side=P.ROI_SIZE)[1] == plain
    assert finish_roi(roi, None, native_side=400)[1] == plain
