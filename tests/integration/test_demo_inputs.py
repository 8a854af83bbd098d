"""``storefront demo`` on malformed inputs and unusable outputs: each is skipped and counted,
or refused with a reason and exit code 2, never a traceback, a hang or lost results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.baskets import MAX_LINE_QUANTITY, PRICE_TOO_HIGH, TOO_MANY_UNITS
from storefront.catalog import MAX_PRICE_MINOR
from storefront.cli import app

HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["demo", *args], catch_exceptions=False)


def _refused(result: Any, *needles: str) -> None:
    """Exit code 2 with a one-line reason holding ``needles``, no traceback, no run."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output
    flat = "".join(result.output.split())  # rich wraps long reasons, even inside words
    for needle in needles:
        assert "".join(needle.split()) in flat, (needle, result.output)


def test_absurd_quantities_and_prices_are_skipped_and_counted(tmp_path: Path) -> None:
    baskets = tmp_path / "baskets.csv"
    baskets.write_text(
        HEADER
        + "1,A1,Mug,2,2009-12-01 07:45:00,1.50,,UK\n"
        + f"2,B2,Plate,{MAX_LINE_QUANTITY + 1},2009-12-01 07:45:00,1.50,,UK\n"
        + f"3,C3,Ring,1,2009-12-01 07:45:00,{MAX_PRICE_MINOR // 100}.01,,UK\n"
        + "4,D4,Vase,1,2009-12-01 07:45:00,1e30,,UK\n"  # past SQLite's INTEGER
    )
    out = tmp_path / "report.json"
    result = _run(["--baskets", str(baskets), "--shoppers", "3", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["invoices_read"] == 4
    assert report["baskets_available"] == 1
    skipped = report["invoices_skipped"]
    assert skipped[TOO_MANY_UNITS] == 1 and skipped[PRICE_TOO_HIGH] >= 1
    assert sum(skipped.values()) == 3  # 1e30: too high, or (money.py) too large to parse
    assert report["receipts_matching_expected"] == report["receipts"] > 0
    assert report["events_sent"] < 100  # three baskets of two mugs, not 100,001 units


def test_non_utf8_manifest_is_a_clean_error(tmp_path: Path) -> None:
    palms = tmp_path / "palms"
    palms.mkdir()
    (palms / "manifest.csv").write_bytes(b"path,identity,session,capture,source\n"
                                         b"\xff\xfe.png,a,1,1,x\n")
    report = tmp_path / "r.json"
    result = _run(["--palms", str(palms), "--shoppers", "3", "--report", str(report)])
    _refused(result, "manifest.csv cannot be read")
    assert not report.exists()


@pytest.mark.parametrize(("rows", "needle"), [
    ("a.png,a,1,1,x\nb.png,a,2,1,x\n", "'a.png' is not a file"),
    (",a,1,1,x\n", "line 2: empty path"),
    ("a.png\n", "empty identity, session, capture"),
])
def test_manifest_rows_that_cannot_be_captures_are_clean_errors(tmp_path: Path, rows: str,
                                                                needle: str) -> None:
    palms = tmp_path / "palms"
    palms.mkdir()
    (palms / "manifest.csv").write_text("path,identity,session,capture,source\n" + rows)
    _refused(_run(["--palms", str(palms), "--shoppers", "3"]), needle)


@pytest.mark.parametrize("where", ["missing/x.json", "afile/x.json", "afolder"])
def test_unwritable_report_path_is_refused_before_the_run(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "afolder").mkdir()
    result = _run(["--shoppers", "2", "--report", str(tmp_path / where)])
    _refused(result, "cannot write the report to")
    assert "Enrolling" not in result.output and "identified_correctly" not in result.output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_report_that_fails_at_the_end_keeps_the_summary(tmp_path: Path) -> None:
    result = _run(["--shoppers", "2", "--report", "/dev/full"])  # every write: ENOSPC
    _refused(result, "cannot write the report to /dev/full")
    assert result.output.index("identified_correctly") < result.output.index("error:")


def _palm_folder(folder: Path, identities: list[str]) -> Path:
    """A manifest where every identity lists the same palm's captures (session 1 enrols
    five, session 2 probes one), so all but the first enrolment are duplicates."""
    folder.mkdir()
    palms = SyntheticPalms(7)
    rows = ["path,identity,session,capture,source"]
    for capture in range(6):
        (folder / f"c{capture}.png").write_bytes(encode_png(palms.capture(0, capture)))
    for identity in identities:
        rows += [f"c{c}.png,{identity},{1 if c < 5 else 2},{c},synthetic" for c in range(6)]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_enrolment_failures_are_reported_by_reason(tmp_path: Path) -> None:
    palms = _palm_folder(tmp_path / "palms", ["a", "b", "c"])
    out = tmp_path / "report.json"
    result = _run(["--palms", str(palms), "--shoppers", "3", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["enrolled"] == 1 and report["enrolment_failures"] == 2
    assert report["enrolment_failure_reasons"] == {
        "this palm is already enrolled for another account": 2}
    assert "enrolment_failure_reasons" in result.output
    assert "already enrolled" in " ".join(result.output.split())


def test_data_dir_holding_a_previous_demo_is_refused(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    first = _run(["--shoppers", "3", "--data-dir", str(kept)])
    assert first.exit_code == 0, first.output
    again = _run(["--shoppers", "3", "--data-dir", str(kept)])
    _refused(again, f"--data-dir {kept} already holds a store", "new or empty folder")
    assert "Enrolling" not in again.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("unrelated files are left alone")
    assert _run(["--shoppers", "3", "--data-dir", str(other)]).exit_code == 0
