"""``storefront identity evaluate`` on synthetic manifest folders, malformed input, Tongji."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.cli import app

runner = CliRunner()
HEADER = ["path", "identity", "session", "capture", "source"]


def _folder(tmp_path: Path, palms: int = 4, per_session: int = 2, sessions: int = 2) -> Path:
    gen = SyntheticPalms(seed=3)
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = []
    for palm in range(palms):
        for s in range(1, sessions + 1):
            for c in range(per_session):
                rel = f"p{palm}/s{s}_{c}.png"
                (tmp_path / f"p{palm}").mkdir(exist_ok=True)
                capture = (s - 1) * per_session + c
                (tmp_path / rel).write_bytes(encode_png(gen.capture(palm, capture)))
                rows.append([rel, f"p{palm}", str(s), str(c), "synthetic"])
    _write(tmp_path / "manifest.csv", HEADER, rows)
    return tmp_path


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_two_session_synthetic_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    out, det = tmp_path / "r.json", tmp_path / "det.png"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                 "--det", str(det)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["images"] == 16 and report["identities"] == 4
    assert report["genuine_comparisons"] == 4 * 2 * 2
    assert report["impostor_comparisons"] == 8 * 8 - 16
    assert report["fta"] == 0.0 and report["fte"] == 0.0
    assert report["rank1"] == 1.0
    assert report["eer"] == 0.0
    assert set(report["fnmr_at_fmr"]) == {"1e-3", "1e-4", "1e-5"}
    assert report["fnmr_at_fmr"]["1e-3"] is None  # 48 impostor comparisons cannot resolve it
    assert report["extract_ms_p50"] > 0 and report["compare_us_p50"] > 0
    assert det.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_session_all_pairs_and_unreadable_images_are_fta(tmp_path: Path) -> None:
    """A file that does not decode is an FTA; a missing file is a data error, reported
    apart and left out of the FTA's count (it was an FTA before)."""
    folder = _folder(tmp_path / "set", palms=3, per_session=3, sessions=1)
    (folder / "p0" / "s1_0.png").write_bytes(b"not an image")
    (folder / "p1" / "s1_1.png").unlink()
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["protocol"] == "all pairs"
    assert report["fta"] == pytest.approx(1 / 8)
    assert len(report["failures"]) == 1
    assert report["unreadable"] == 1 and report["images"] == 8
    assert report["genuine_comparisons"] == 1 + 1 + 3  # pairs within p0, p1, p2
    assert report["impostor_comparisons"] == 7 * 6 // 2 - 5
    assert report["fte"] == 0.0


def test_limit_identities(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", palms=3, per_session=1)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                 "--limit-identities", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["identities"] == 2


def test_a_single_image_reports_no_measure_as_zero(tmp_path: Path) -> None:
    """One capture: no comparison, nothing to rank; every such measure is null / n/a."""
    folder = _folder(tmp_path / "set", palms=1, per_session=1, sessions=1)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["genuine_comparisons"] == 0 and report["impostor_comparisons"] == 0
    assert report["rank1"] is None and report["eer"] is None
    assert set(report["fnmr_at_fmr"].values()) == {None}
    assert set(report["score_at_fmr"].values()) == {None}
    assert report["fta"] == 0.0 and report["fte"] == 0.0  # one capture, acquired
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.output.splitlines() if line.count("│") == 3}
    assert rows["rank-1"] == "n/a" and rows["EER"] == "n/a"
    assert rows["FNMR at FMR 1e-3"] == "n/a"


def test_one_capture_per_identity_has_impostors_but_no_rank1(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", palms=3, per_session=1, sessions=1)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["genuine_comparisons"] == 0 and report["impostor_comparisons"] == 3
    assert report["rank1"] is None  # no capture has another of its own palm (was 0.0)
    assert report["eer"] is None


@pytest.mark.parametrize("path", ["../outside.png", "p0/../../outside.png", "ABSOLUTE"])
def test_a_path_leaving_the_folder_is_refused(tmp_path: Path, path: str) -> None:
    """As the demo's --palms loader: a manifest path outside its folder is never read."""
    folder = _folder(tmp_path / "set", palms=2, per_session=2)
    outside = tmp_path / "outside.png"  # a readable palm image, so reading it would succeed
    outside.write_bytes((folder / "p0" / "s1_0.png").read_bytes())
    value = str(outside) if path == "ABSOLUTE" else path
    with (folder / "manifest.csv").open("a", newline="") as f:
        csv.writer(f).writerow([value, "p0", "1", "9", "synthetic"])
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "error:" in text and "leaves the folder" in text and "manifest line 10" in text
    assert not out.exists()


@pytest.mark.parametrize("case", ["no folder", "no manifest", "missing column", "empty field",
                                  "no rows"])
def test_malformed_input_is_a_clear_error(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "set"
    if case != "no folder":
        folder.mkdir()
    if case == "missing column":
        _write(folder / "manifest.csv", ["path", "identity", "capture"], [["a.png", "x", "1"]])
    elif case == "empty field":
        _write(folder / "manifest.csv", HEADER, [["a.png", "", "1", "1", "s"]])
    elif case == "no rows":
        _write(folder / "manifest.csv", HEADER, [])
    result = runner.invoke(app, ["identity", "evaluate", str(folder)])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    expected = {"no folder": "is not a folder", "no manifest": "does not exist",
                "missing column": "session", "empty field": "empty identity",
                "no rows": "lists no captures"}[case]
    assert expected in " ".join(result.output.split())


@pytest.mark.realdata
def test_tongji_ten_identities(tongji_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tongji.json"
    result = runner.invoke(app, ["identity", "evaluate", str(tongji_dir), "--json", str(out),
                                 "--limit-identities", "10"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["identities"] == 10 and report["images"] == 200
    assert report["genuine_comparisons"] == 1000 and report["impostor_comparisons"] == 9000
    assert report["fta"] == 0.0
    assert report["rank1"] >= 0.99
    assert report["eer"] <= 0.01


@pytest.mark.realdata
def test_phone_hands_whose_wrists_leave_the_frame(data_dir: Path, tmp_path: Path) -> None:
    # The whole-hand ROI circle kept inside the image (roi_segment.in_frame_circle):
    # measured EER 0 on the whole set (9.74 % while the circle could reach past the
    # border towards the cut wrist); the bound leaves room for one or two comparisons.
    out = tmp_path / "phone.json"
    folder = data_dir / "palm" / "contactless-phone-hand"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["fta"] == 0.0 and report["images"] == 86
    assert report["rank1"] == 1.0
    assert report["eer"] <= 0.01
