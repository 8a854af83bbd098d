"""``benchmarks/roi_halves.py``: identity split and the three-way measurement.

Runs on a synthetic two-session folder made here (ROIs, passed through), so it needs no
real data.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "roi_halves.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("roi_halves", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _synthetic_set(folder: Path, palms: int = 5) -> Path:
    gen = SyntheticPalms(seed=5)
    folder.mkdir(parents=True)
    rows = []
    for palm in range(palms):
        (folder / f"p{palm}").mkdir()
        for session in (1, 2):
            for capture in range(2):
                rel = f"p{palm}/s{session}_{capture}.png"
                image = gen.capture(palm, (session - 1) * 2 + capture)
                (folder / rel).write_bytes(encode_png(image))
                rows.append([rel, f"palm{palm}", str(session), str(capture), "synthetic"])
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "session", "capture", "source"])
        writer.writerows(rows)
    return folder


def test_split_takes_the_sorted_first_half_for_tuning() -> None:
    split = _module().split_identities
    assert split(["c", "a", "e", "b", "d"]) == (["a", "b"], ["c", "d", "e"])
    assert split({"x10", "x2", "x1", "x3"}) == (["x1", "x10"], ["x2", "x3"])
    with pytest.raises(ValueError, match="at least 2"):
        split(["only"])


def test_half_manifest_points_at_the_original_images(tmp_path: Path) -> None:
    folder = _synthetic_set(tmp_path / "data" / "synthetic")
    half = _module().write_half(folder, ["palm1", "palm3"], tmp_path / "half")
    with (half / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["identity"] for row in rows} == {"palm1", "palm3"} and len(rows) == 8
    assert all(not Path(row["path"]).is_absolute() and ".." not in Path(row["path"]).parts
               and (half / row["path"]).is_file() for row in rows)  # inside its folder
    assert (half / "images").resolve() == folder.resolve()
    assert not [p for p in half.rglob("*.png") if not p.is_symlink()
                and (half / "images") not in p.parents]  # no image copied


def test_three_way_measurement_of_a_synthetic_set(tmp_path: Path) -> None:
    _synthetic_set(tmp_path / "data" / "synthetic")
    out = tmp_path / "halves.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--sets", "synthetic",
         "--json", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())["sets"]["synthetic"]
    assert report["tuning"]["identities"] == 2 and report["held_out"]["identities"] == 3
    assert report["all"]["identities"] == 5
    assert report["tuning"]["identity_range"] == ["palm0", "palm1"]
    assert report["held_out"]["identity_range"] == ["palm2", "palm4"]
    # Session 1 x session 2: 2 x 2 genuine comparisons per palm.
    assert report["tuning"]["genuine_comparisons"] == 2 * 4
    assert report["all"]["genuine_comparisons"] == 5 * 4
    assert report["all"]["impostor_comparisons"] == 10 * 10 - 5 * 4
    assert report["all"]["fta"] == 0.0 and report["all"]["failures_by_reason"] == {}
    assert report["all"]["eer"] == 0.0
    assert "synthetic" in done.stdout and "held_out" in done.stdout
