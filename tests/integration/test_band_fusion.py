"""``benchmarks/band_fusion.py`` on the real PolyU-MS ROI bands (read from STOREFRONT_DATA_DIR).

Skips with a reason when the data is absent; fails instead under ``CI=true``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from service_skips import skip_or_fail

pytestmark = pytest.mark.realdata

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "band_fusion.py"
METHODS = {"green", "nir", "fused_sum", "fused_max"}




@pytest.fixture(scope="module")
def bands_dir(data_dir: Path) -> Path:
    """The PolyU multispectral ROI bands (green and NIR, 10 palms x 12 per band)."""
    path = data_dir / "palm" / "polyu-ms-roi-bands"
    if not (path / "manifest.csv").is_file():
        skip_or_fail(f"{path}/manifest.csv is missing")
    return path


def _rate(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def test_band_fusion_benchmark_reports_every_method(bands_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "band_fusion.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(bands_dir),
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.exists(), done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["images"] == 240 and report["paired_captures"] == 120
    assert report["failures"] == [] and report["not_passthrough"] == []
    held, everyone = report["held_out"], report["all"]
    assert held["optimistic"] is False and everyone["optimistic"] is True
    assert len(held["train_identities"]) == len(held["test_identities"]) == 5
    assert not set(held["train_identities"]) & set(held["test_identities"])
    # 5 palms x 6 x 6 genuine, 30 x 30 - 180 impostor; on all 10: 360 and 3,240.
    assert (held["genuine_comparisons"], held["impostor_comparisons"]) == (180, 720)
    assert (everyone["genuine_comparisons"], everyone["impostor_comparisons"]) == (360, 3240)
    for section in (held, everyone):
        assert set(section["normalisation"]) == {"green", "nir"}
        assert all(n["impostor_std"] > 0 for n in section["normalisation"].values())
        assert set(section["methods"]) == METHODS
        for row in section["methods"].values():
            assert _rate(row["eer"])
            assert set(row["fnmr_at_fmr"]) == {"1e-2", "1e-3"}
            assert _rate(row["at_eer_threshold"]["fmr"])
            assert _rate(row["at_eer_threshold"]["fnmr"])
    # 720 impostors cannot resolve FMR 1e-3; 3,240 can.
    assert held["methods"]["fused_sum"]["fnmr_at_fmr"]["1e-3"] is None
    assert _rate(everyone["methods"]["fused_sum"]["fnmr_at_fmr"]["1e-3"])
    assert all(_rate(r["at_training_eer_threshold"]["fmr"]) for r in held["methods"].values())
    assert "fused_sum" in done.stdout and "EER" in done.stdout
