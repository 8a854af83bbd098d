"""``storefront identity evaluate``: data-derived text printed as text (never as rich
markup), outputs checked before the run and written after the summary, warnings for
left-out captures, unreadable files apart from FTA, long failure lists cut with a count."""

from __future__ import annotations

import csv
import errno
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.cli import app

runner = CliRunner()
HEADER = ["path", "identity", "session", "capture", "source"]


def _folder(root: Path, palms: int = 2, sessions: int = 2,
            extra: Sequence[list[str]] = ()) -> Path:
    """``palms`` identities x ``sessions`` sessions, one synthetic capture each, then the
    ``extra`` manifest rows (their files are not written)."""
    gen = SyntheticPalms(seed=5)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for palm in range(palms):
        (root / f"p{palm}").mkdir(exist_ok=True)
        for s in range(1, sessions + 1):
            rel = f"p{palm}/s{s}.png"
            (root / rel).write_bytes(encode_png(gen.capture(palm, s)))
            rows.append([rel, f"p{palm}", str(s), "0", "synthetic"])
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows + list(extra))
    return root


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_markup_in_paths_is_printed_as_text(tmp_path: Path) -> None:
    """Missing files whose names hold rich markup: listed verbatim, no MarkupError."""
    folder = _folder(tmp_path / "set", extra=[["img[/x]palm.png", "p0", "1", "8", "s"],
                                              ["[red]gone.png", "p1", "1", "8", "s"]])
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "img[/x]palm.png" in result.output and "[red]gone.png" in result.output
    assert json.loads(out.read_text())["unreadable"] == 2


def test_a_folder_name_with_markup_is_not_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "odd" / "[/x]nope"
    result = runner.invoke(app, ["identity", "evaluate", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{folder} is not a folder" in _flat(result.output)


def test_missing_output_folders_are_created(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    out, det = tmp_path / "ev" / "a" / "b" / "out.json", tmp_path / "nodir" / "x.svg"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                 "--det", str(det)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["genuine_comparisons"] == 2
    assert det.read_text().lstrip().startswith("<?xml")


def test_an_unsupported_det_extension_is_refused_before_the_run(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    out = tmp_path / "r.json"
    for name in ("out.det", "noextension"):
        result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                     "--det", str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        text = _flat(result.output)
        assert "error:" in text and "not a plot format" in text and "png" in text
        assert "extract" not in text and not out.exists()  # refused before the run


def test_a_write_failure_comes_after_the_summary_and_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "set")
    out, det = tmp_path / "r.json", tmp_path / "det.png"
    write_text = Path.write_text

    def full_disk(self: Path, *args: Any, **kwargs: Any) -> int:
        if self == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                 "--det", str(det)])
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert text.index("palm evaluation") < text.index("cannot write the report")
    assert "No space left on device" in text
    assert det.read_bytes()[:4] == b"\x89PNG"  # the other output is still written


def test_an_output_path_that_is_a_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    (tmp_path / "taken").mkdir()
    (tmp_path / "afile").write_text("")
    for args, reason in ((["--json", str(tmp_path / "taken")], "is a folder, not a file"),
                         (["--det", str(tmp_path / "afile" / "x.png")], "is not a folder")):
        result = runner.invoke(app, ["identity", "evaluate", str(folder), *args])
        assert result.exit_code == 2, result.output
        assert reason in _flat(result.output) and "extract" not in result.output


def test_unused_sessions_duplicates_and_unreadable_rows_are_warned(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", sessions=3,
                     extra=[["p0/s1.png", "p0", "1", "0", "again"],
                            ["p1/s1.jpg", "p1", "1", "9", "missing"]])
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "warning: 2 capture(s) not used" in text
    assert "warning: 1 duplicate manifest row(s) dropped" in text
    assert "line 8 repeats line 2" in text
    assert "warning: 1 listed file(s) could not be read" in text and "s1.jpg" in text
    report = json.loads(out.read_text())
    assert (report["captures_unused"], report["duplicate_rows"], report["unreadable"]) == (
        2, 1, 1)
    assert report["fta"] == 0.0 and report["images"] == 4


def test_no_readable_image_exits_2(tmp_path: Path) -> None:
    """Every path says .jpg but the files are .png: a data error, not FTA 100 %."""
    folder = _folder(tmp_path / "set")
    text = (folder / "manifest.csv").read_text().replace(".png", ".jpg")
    (folder / "manifest.csv").write_text(text)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert "none of the 4 image(s)" in _flat(result.output) and not out.exists()


def test_more_than_ten_failures_say_how_many_more(tmp_path: Path) -> None:
    junk = [[f"p0/junk{n:02d}.png", "p0", "1", f"j{n}", "junk"] for n in range(13)]
    folder = _folder(tmp_path / "set", extra=junk)
    for n, row in enumerate(junk):  # distinct bytes: identical ones are duplicate rows
        (folder / row[0]).write_bytes(b"not an image %d" % n)
    result = runner.invoke(app, ["identity", "evaluate", str(folder)])
    assert result.exit_code == 0, result.output
    listed = [line for line in result.output.splitlines() if line.startswith(f"FTA {folder}")]
    assert len(listed) == 10 and "... and 3 more" in _flat(result.output)


def test_a_det_format_needing_latex_is_refused_before_the_run(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--det",
                                 str(tmp_path / "y.pgf")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = _flat(result.output)
    assert "extension .pgf is not a plot format" in text and "extract" not in text


def test_any_failure_while_writing_an_output_is_reported_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity import evaluate_run

    def no_latex(*_: Any, **__: Any) -> None:
        raise RuntimeError("'xelatex' not found")

    monkeypatch.setattr(evaluate_run, "write_det_plot", no_latex)
    folder = _folder(tmp_path / "set")
    out, det = tmp_path / "r.json", tmp_path / "det.pdf"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out),
                                 "--det", str(det)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cannot write the DET curve" in _flat(result.output)
    assert "'xelatex' not found" in _flat(result.output)
    assert json.loads(out.read_text())["images"] == 4  # the report is still written


def test_outputs_naming_the_manifest_or_each_other_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set")
    manifest = folder / "manifest.csv"
    before = manifest.read_bytes()
    (tmp_path / "link.json").symlink_to(manifest)
    cases = [(["--json", str(manifest)], "is the input manifest"),
             (["--json", str(folder / "p0" / ".." / "manifest.csv")], "is the input manifest"),
             (["--json", str(tmp_path / "link.json")], "is the input manifest"),
             (["--json", str(tmp_path / "o.png"), "--det", str(tmp_path / "o.png")],
              "name the same file")]
    for args, reason in cases:
        result = runner.invoke(app, ["identity", "evaluate", str(folder), *args])
        assert result.exit_code == 2, result.output
        assert reason in _flat(result.output) and "extract" not in result.output
    assert manifest.read_bytes() == before and not (tmp_path / "o.png").exists()


def test_a_refused_run_leaves_no_output_folders(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deep" / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(tmp_path / "missing"),
                                 "--json", str(out), "--det", str(tmp_path / "d2" / "x.png")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new").exists() and not (tmp_path / "d2").exists()


def test_byte_identical_images_under_two_identities_exit_2(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", extra=[["p1/copy.png", "p1", "1", "9", "copy"]])
    (folder / "p1" / "copy.png").write_bytes((folder / "p0" / "s1.png").read_bytes())
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["identity", "evaluate", str(folder), "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert "byte-identical files" in _flat(result.output) and not out.exists()


def test_limit_identities_help_says_natural_order() -> None:
    result = runner.invoke(app, ["identity", "evaluate", "--help"], env={"COLUMNS": "200"})
    assert "natural order" in _flat(result.output) and "p2 before p10" in _flat(result.output)


def test_outputs_naming_an_input_image_are_refused_before_the_run(tmp_path: Path) -> None:
    """--det / --json naming a listed image (as written, through '..', through a symbolic
    link or as a hard link) would overwrite the data set: refused, nothing written."""
    folder = _folder(tmp_path / "set", extra=[["p1/listed-missing.png", "p1", "1", "7", "s"]])
    images = {p: p.read_bytes() for p in folder.glob("p*/*.png")}
    (tmp_path / "hard.png").hardlink_to(folder / "p1" / "s2.png")
    (tmp_path / "soft.png").symlink_to(folder / "p0" / "s1.png")
    cases = [["--det", str(folder / "p1" / "s1.png")],
             ["--json", str(folder / "p0" / "s2.png")],
             ["--json", str(folder / "p0" / ".." / "p1" / "s1.png")],
             ["--det", str(tmp_path / "hard.png")],
             ["--det", str(tmp_path / "soft.png")],
             ["--json", str(folder / "p1" / "listed-missing.png")],
             ["--det", str(tmp_path / "ok.png"), "--json", str(folder / "p0" / "s1.png")]]
    for args in cases:
        result = runner.invoke(app, ["identity", "evaluate", str(folder), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "is the input image" in _flat(result.output), result.output
        assert "extract" not in result.output  # before the run
    assert {p: p.read_bytes() for p in folder.glob("p*/*.png")} == images
    assert not (folder / "p1" / "listed-missing.png").exists()
    assert not (tmp_path / "ok.png").exists()
