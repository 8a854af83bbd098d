"""``identity.evaluate_run``: rows made only of commas and whitespace are blank lines
(skipped, line numbers kept), partly empty rows are still refused, and a manifest written
with Windows ``\\`` separators says so in the unreadable reason instead of failing
without a hint (paths are never rewritten: a ``\\`` is a filename character)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import pytest
from typer.testing import CliRunner

from identity.evaluate_run import (
    SEPARATOR_HINT,
    ManifestError,
    acquire,
    evaluate_folder,
    load_manifest,
    read_manifest,
)
from identity.synthetic import SyntheticPalms
from storefront.cli import app

HEADER = "path,identity,session,capture,source"
GEN = SyntheticPalms(seed=17)
TWO_BY_TWO = [(p, s) for p in ("p0", "p1") for s in ("1", "2")]
TIMINGS = ("extract_ms_p50", "compare_us_p50")


def _images(root: Path, rows: list[tuple[str, str]] = TWO_BY_TWO) -> list[str]:
    """One synthetic capture per (identity, session) written with cv2.imwrite as
    ``pN/S_0.png``; returns the manifest lines (``path,identity,session,0,synthetic``)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (identity, session) in enumerate(rows):
        (root / identity).mkdir(exist_ok=True)
        rel = f"{identity}/{session}_0.png"
        assert cv2.imwrite(str(root / rel), GEN.capture(int(identity[1:]), n))
        lines.append(f"{rel},{identity},{session},0,synthetic")
    return lines


def _manifest(root: Path, lines: list[str]) -> Path:
    """Write ``root/manifest.csv`` verbatim (header, then ``lines``); returns ``root``."""
    (root / "manifest.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return root


def _measured(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in TIMINGS}


def test_comma_only_rows_at_the_end_and_in_the_middle_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    plain = _measured(evaluate_folder(_manifest(folder, lines)).report)
    padded = [lines[0], ",,,,", lines[1], ",,,", lines[2], lines[3], ",,,,", ",,,,", ","]
    assert _measured(evaluate_folder(_manifest(folder, padded)).report) == plain
    assert [c.line for c in read_manifest(folder)] == [2, 4, 6, 7]


def test_whitespace_only_fields_are_blank_rows_too(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    plain = _measured(evaluate_folder(_manifest(folder, lines)).report)
    padded = [" , , , , ", lines[0], lines[1], "   ", "\t,\t,,, ", lines[2], lines[3],
              '" ","",,,', " ,  ,  ,  ,  "]
    assert _measured(evaluate_folder(_manifest(folder, padded)).report) == plain
    assert [c.line for c in read_manifest(folder)] == [3, 4, 7, 8]


def test_line_numbers_in_later_errors_count_the_skipped_rows(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    # a duplicate row after blank rows: reported with its physical line numbers
    manifest = load_manifest(_manifest(folder, [lines[0], ",,,,", " , , , ", *lines[1:],
                                                ",,,,", lines[0]]))
    assert [(d.line, d.first_line) for d in manifest.duplicates] == [(9, 2)]
    report = evaluate_folder(folder).report
    assert report["duplicate_first"][0]["line"] == 9
    assert report["duplicate_first"][0]["first_line"] == 2
    # a path leaving the folder after blank rows: its own line
    _manifest(folder, [lines[0], ",,,,", "../x.png,p0,1,0,s", *lines[1:]])
    with pytest.raises(ManifestError, match=r"^manifest line 4: path '\.\./x\.png' leaves"):
        read_manifest(folder)


@pytest.mark.parametrize(("row", "empty"), [
    ("p0/1_0.png,,1,0,synthetic", "identity"),
    (",p0,,,", "path, session, capture"),
    (" ,p0, ,0, ", "path, session"),
    (",,,,note", "path, identity, session, capture"),  # only the extra column filled
    ("p0/1_0.png", "identity, session, capture"),
])
def test_a_partly_empty_row_is_still_refused(tmp_path: Path, row: str, empty: str) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    _manifest(folder, [lines[0], ",,,,", row, *lines[1:], ",,,,"])
    with pytest.raises(ManifestError) as info:
        read_manifest(folder)
    assert info.value.reason == f"manifest line 4: empty {empty}"


def test_a_manifest_of_blank_rows_only_lists_no_captures(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    _manifest(folder, [",,,,", " , ", ""])
    with pytest.raises(ManifestError, match="lists no captures"):
        read_manifest(folder)


def test_backslash_paths_say_the_separator_is_wrong(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = [line.replace("/", "\\", 1) for line in _images(folder)]
    _manifest(folder, lines)
    with pytest.raises(ManifestError) as info:
        evaluate_folder(folder)
    message = info.value.reason
    assert message.startswith("none of the 4 image(s) listed in ")
    assert message.endswith(
        "unreadable: No such file or directory (the manifest uses '\\' separators: "
        "write paths with '/'))")
    assert "p0\\1_0.png" in message  # the path as listed, not rewritten


def test_the_hint_is_in_each_unreadable_reason_of_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder, [*TWO_BY_TWO, ("p2", "1")])
    _manifest(folder, [*lines[:4], lines[4].replace("/", "\\", 1), "p2\\gone.png,p2,2,0,s"])
    report = evaluate_folder(folder).report
    assert report["images"] == 4 and report["unreadable"] == 2
    reasons = {Path(r["path"]).name: r["reason"] for r in report["unreadable_first"]}
    assert reasons == {
        "p2\\1_0.png": "unreadable: No such file or directory" + SEPARATOR_HINT,
        # no file under either spelling: no hint
        "p2\\gone.png": "unreadable: No such file or directory",
    }


def test_a_file_with_a_backslash_in_its_name_is_read_as_listed(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    # p0's session-2 capture moved to a file literally named "p0\2_0.png"
    (folder / "p0" / "2_0.png").rename(folder / "p0\\2_0.png")
    lines[1] = lines[1].replace("p0/", "p0\\")
    report = evaluate_folder(_manifest(folder, lines)).report
    assert report["unreadable"] == 0 and report["images"] == 4
    assert report["genuine_comparisons"] == 2


def test_no_hint_outside_the_folder_or_for_other_errors(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    lines = _images(folder)
    assert cv2.imwrite(str(tmp_path / "outside.png"), GEN.capture(3, 0))
    (folder / "p1" / "sub.png").mkdir()  # the '/' spelling is a folder, not a file
    (folder / "p0\\x.png").mkdir()  # the listed name exists (a folder): not "missing"
    assert cv2.imwrite(str(folder / "p0" / "x.png"), GEN.capture(0, 9))
    _manifest(folder, [*lines, "..\\outside.png,p0,2,5,s", "p1\\sub.png,p1,2,5,s",
                       "p0\\x.png,p0,2,6,s"])
    captures = read_manifest(folder)
    assert captures[4].path == folder / "..\\outside.png"  # one name inside the folder
    reasons = {Path(p).name: r for p, r in acquire(captures[4:]).unreadable}
    assert reasons["..\\outside.png"] == "unreadable: No such file or directory"
    assert reasons["p1\\sub.png"] == "unreadable: No such file or directory"
    assert "separators" not in reasons["p0\\x.png"]


def test_the_cli_exits_2_with_the_hint(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    _manifest(folder, [line.replace("/", "\\", 1) for line in _images(folder)])
    result = CliRunner().invoke(app, ["identity", "evaluate", str(folder)])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "could be read" in flat and "write paths with '/'" in flat
