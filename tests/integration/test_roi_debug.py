"""``benchmarks/roi_debug.py``: decodes and acquires exactly as ``identity evaluate`` does,
reads manifests with the evaluation's reader (clear errors, exit 2), writes unique safe
output names, skips its own output folder and counts unreadable files apart from FTA."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from identity.imageio import decode_image_offline, encode_png
from identity.synthetic import SyntheticPalms

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "roi_debug.py"
HEADER = ["path", "identity", "session", "capture", "source"]
GEN = SyntheticPalms(seed=21)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("roi_debug", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["roi_debug"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


roi_debug = _load()


def _manifest(folder: Path, rows: list[list[str]], header: list[str] = HEADER,
              encoding: str = "utf-8") -> None:
    with (folder / "manifest.csv").open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _palm(folder: Path, rel: str, palm: int = 0) -> None:
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_bytes(encode_png(GEN.capture(palm, 0)))


def _failures(out: Path) -> list[dict[str, str]]:
    with (out / "failures.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_input_step_is_what_the_pipeline_decodes(tmp_path: Path) -> None:
    """A 16-bit PNG of 12-bit data: was 'too dark' with cv2.imread; a large image: shrunk
    to 4,096 px as evaluate shrinks it."""
    folder = tmp_path / "set"
    folder.mkdir()
    palm = GEN.capture(1, 0).astype(np.uint16) * 16  # 12-bit values in 16 bits
    ok, deep = cv2.imencode(".png", palm)
    assert ok
    (folder / "deep.png").write_bytes(deep.tobytes())
    ok, wide = cv2.imencode(".png", np.full((100, 5000), 120, np.uint8))
    assert ok
    (folder / "wide.png").write_bytes(wide.tobytes())
    out = tmp_path / "out"
    assert roi_debug.main([str(folder), "--out", str(out)]) == 0
    seen = cv2.imread(str(out / "0001-deep.png__0_input.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(seen, decode_image_offline(deep.tobytes()))
    assert not any(r["path"] == "deep.png" for r in _failures(out))
    shrunk = cv2.imread(str(out / "0002-wide.png__0_input.png"), cv2.IMREAD_UNCHANGED)
    assert shrunk.shape == (82, 4096)


def test_manifests_evaluate_accepts_are_read(tmp_path: Path) -> None:
    """A byte-order mark and upper-case column names (was KeyError)."""
    folder = tmp_path / "set"
    folder.mkdir()
    _palm(folder, "a/x.png")
    _manifest(folder, [["a/x.png", "p0", "1", "0", "s"]],
              header=[h.upper() for h in HEADER], encoding="utf-8-sig")
    out = tmp_path / "out"
    assert roi_debug.main([str(folder), "--out", str(out)]) == 0
    assert (out / "0001-a_x.png__0_input.png").is_file()


@pytest.mark.parametrize(("setup", "message"), [
    ("latin1", "cannot be read"),
    ("absolute", "leaves the folder"),
    ("dotdot", "leaves the folder"),
    ("missing", "is not a folder"),
    ("empty", "no manifest.csv and no image file"),
])
def test_bad_input_exits_2_with_the_reason(tmp_path: Path, setup: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "set"
    if setup != "missing":
        folder.mkdir()
    if setup == "latin1":
        _manifest(folder, [["a/x.png", "pälm", "1", "0", "s"]], encoding="latin-1")
    elif setup == "absolute":
        _manifest(folder, [[str(tmp_path / "x.png"), "p0", "1", "0", "s"]])
    elif setup == "dotdot":
        _manifest(folder, [["../x.png", "p0", "1", "0", "s"]])
    assert roi_debug.main([str(folder), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_manifest_exits_2_without_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    _manifest(folder, [["a/x.png", "pälm", "1", "0", "s"]], encoding="latin-1")
    done = subprocess.run([sys.executable, str(SCRIPT), str(folder), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "cannot be read" in done.stderr


def test_output_names_are_unique_and_never_hidden(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    for rel in ("x.png", "x.jpg", "a_b/c.png", "a/b_c.png", ".hidden/y.png"):
        _palm(folder, rel)
    out = tmp_path / "out"
    assert roi_debug.main([str(folder), "--out", str(out)]) == 0
    inputs = sorted(p.name for p in out.glob("*__0_input.png"))
    assert len(inputs) == 5 and not any(n.startswith(".") for n in os.listdir(out))
    assert len({n.split("-", 1)[0] for n in inputs}) == 5  # one number per image


def test_an_output_folder_in_or_inside_the_input_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--out`` inside the image folder wrote step images and failures.csv into the
    data set; it is refused (exit 2, nothing written), as the folder itself is."""
    folder = tmp_path / "set"
    _palm(folder, "x.png")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    for out in (folder, folder / "debug", folder / "a" / "b", folder / "." / "debug"):
        assert roi_debug.main([str(folder), "--out", str(out)]) == 2
        assert "image folder" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(folder)
    assert roi_debug.main([str(folder), "--out", str(tmp_path / "link" / "debug")]) == 2
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert roi_debug.main([str(folder), "--out", str(tmp_path / "set-debug")]) == 0


def test_unreadable_files_are_counted_apart_from_failures_to_acquire(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    os.mkfifo(folder / "fifo.png")
    (folder / "junk.png").write_bytes(b"not an image")
    _palm(folder, "ok.png")
    out = tmp_path / "out"
    assert roi_debug.main([str(folder), "--out", str(out)]) == 0
    rows = {r["path"]: (r["result"], r["reason"]) for r in _failures(out)}
    assert rows["fifo.png"] == ("unreadable", "unreadable: not a regular file (a FIFO)")
    assert rows["junk.png"][0] == "fta" and "ok.png" not in rows
    assert "3 images: 1 acquired, 1 failures to acquire" in capsys.readouterr().out
