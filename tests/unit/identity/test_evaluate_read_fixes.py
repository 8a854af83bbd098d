"""``identity.evaluate_run``: only regular files are read and at most the offline limit,
``--limit-identities`` in natural order, byte-identical copies found by content, DET
formats that need no external program."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from identity import evaluate_run, imageio
from identity.evaluate_run import (
    ManifestError,
    acquire,
    det_format_problem,
    det_formats,
    evaluate_folder,
    load_manifest,
    read_manifest,
)
from identity.imageio import decode_image_offline, encode_png
from identity.synthetic import SyntheticPalms

HEADER = ["path", "identity", "session", "capture", "source"]
GEN = SyntheticPalms(seed=13)


def _folder(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A manifest folder, one synthetic capture per (identity, session, capture) row
    (identity ``pN`` is palm N, each row a distinct image)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (identity, session, capture) in enumerate(rows):
        rel = f"{identity}/{session}_{capture}.png"
        (root / identity).mkdir(exist_ok=True)
        (root / rel).write_bytes(encode_png(GEN.capture(int(identity[1:]), n)))
        lines.append([rel, identity, session, capture, "synthetic"])
    _write_manifest(root, lines)
    return root


def _write_manifest(root: Path, lines: list[list[str]]) -> None:
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(lines)


def _append(folder: Path, *rows: list[str]) -> None:
    with (folder / "manifest.csv").open("a", newline="") as f:
        csv.writer(f).writerows(rows)


TWO_BY_TWO = [(p, s, "0") for p in ("p0", "p1") for s in ("1", "2")]


def test_a_fifo_in_the_manifest_is_unreadable_and_does_not_block(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    os.mkfifo(folder / "p0" / "fifo.png")  # nobody writes: a blocking read would hang
    _append(folder, ["p0/fifo.png", "p0", "2", "9", "fifo"])
    report = evaluate_folder(folder).report
    assert report["unreadable"] == 1 and report["images"] == 4 and report["fta"] == 0.0
    assert report["unreadable_first"][0]["reason"] == "unreadable: not a regular file (a FIFO)"


def test_a_link_to_a_device_is_unreadable(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    (folder / "p1" / "zero.png").symlink_to("/dev/zero")
    _append(folder, ["p1/zero.png", "p1", "2", "9", "device"])
    report = evaluate_folder(folder).report
    assert report["unreadable"] == 1
    assert "a character device" in report["unreadable_first"][0]["reason"]


def test_a_file_over_the_offline_limit_is_a_failure_to_acquire_read_no_further(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    sizes = [f.stat().st_size for f in folder.glob("p*/*.png")]
    (folder / "p1" / "big.png").write_bytes(b"\x89PNG" + b"\x00" * (max(sizes) * 2))
    _append(folder, ["p1/big.png", "p1", "2", "9", "too large"])
    monkeypatch.setattr(imageio, "OFFLINE_MAX_ENCODED_BYTES", max(sizes) + 10)
    decoded: list[int] = []

    def recording(data: bytes) -> object:
        decoded.append(len(data))
        return decode_image_offline(data)

    monkeypatch.setattr(evaluate_run, "decode_image_offline", recording)
    report = evaluate_folder(folder).report
    assert report["unreadable"] == 0 and report["images"] == 5
    [failure] = report["failures"]
    assert failure["path"].endswith("big.png")
    assert f"the limit is {max(sizes) + 10} bytes" in failure["reason"]
    assert len(decoded) == 4 and max(decoded) <= max(sizes)  # big.png never handed on


def test_limit_identities_takes_identities_in_natural_order(tmp_path: Path) -> None:
    rows = [(p, s, "0") for p in ("p2", "p10", "p1") for s in ("1", "2")]
    folder = _folder(tmp_path / "set", rows)
    assert {c.identity for c in read_manifest(folder, limit_identities=2)} == {"p1", "p2"}
    assert {c.identity for c in load_manifest(folder, 2).captures} == {"p1", "p2"}


def test_byte_identical_files_under_two_identities_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    (folder / "p1" / "copy.png").write_bytes((folder / "p0" / "1_0.png").read_bytes())
    _append(folder, ["p1/copy.png", "p1", "1", "9", "a copy of p0's capture"])
    with pytest.raises(ManifestError, match=r"lines 2 and 6 list byte-identical files .*"
                                            r"under two identities \('p0', 'p1'\)"):
        evaluate_folder(folder)


def test_a_hard_link_under_another_identity_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    os.link(folder / "p0" / "2_0.png", folder / "p1" / "linked.png")
    _append(folder, ["p1/linked.png", "p1", "2", "9", "hard link"])
    with pytest.raises(ManifestError, match="byte-identical"):
        evaluate_folder(folder)


def test_byte_identical_files_of_one_identity_count_as_duplicate_rows(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    (folder / "p0" / "copy.png").write_bytes((folder / "p0" / "1_0.png").read_bytes())
    _append(folder, ["p0/copy.png", "p0", "2", "9", "session 1 copied into session 2"])
    result = evaluate_folder(folder)
    report = result.report
    assert report["duplicate_rows"] == 1 and report["images"] == 4
    assert report["duplicate_first"] == [{"line": 6, "first_line": 2, "same": "content",
                                          "path": str(folder / "p0" / "copy.png")}]
    assert report["genuine_comparisons"] == 2 and result.genuine.max() < 1.0


def test_acquire_without_drop_copies_keeps_copies(tmp_path: Path) -> None:
    """Other callers (scale benchmark) get every capture, as before."""
    folder = _folder(tmp_path / "set", TWO_BY_TWO)
    (folder / "p1" / "copy.png").write_bytes((folder / "p0" / "1_0.png").read_bytes())
    _append(folder, ["p1/copy.png", "p1", "1", "9", "copy"])
    acquired = acquire(read_manifest(folder))
    assert len(acquired.captures) == 5 and not acquired.copies


def test_det_formats_leave_out_formats_needing_external_programs() -> None:
    formats = det_formats()
    assert {"png", "pdf", "svg", "eps"} <= set(formats) and "pgf" not in formats
    assert det_format_problem(Path("y.pgf")) is not None
    assert det_format_problem(Path("y.PDF")) is None


def test_natural_key_takes_digit_runs_longer_than_int_allows() -> None:
    """5,000 nines: int() raised ValueError (its 4,300-digit limit)."""
    huge = "9" * 5000
    labels = [f"p{huge}", "p10", "p2", f"p0{huge}", "p02", "q1", "p1" + "0" * 5000]
    assert sorted(labels, key=evaluate_run.natural_key) == [
        "p02", "p2", "p10", f"p0{huge}", f"p{huge}", "p1" + "0" * 5000, "q1"]
    ordinary = ["10", "2", "01", "1", "s2", "S1", "s10", "2024-9-30", "2024-10-01", "a", "0"]
    expected = sorted(ordinary, key=lambda t: tuple(
        (0, int(p), p, p) if p.isdigit() else (1, 0, p.casefold(), p)
        for p in re.split(r"([0-9]+)", t) if p))
    assert sorted(ordinary, key=evaluate_run.natural_key) == expected
