"""The ``storefront`` CLI: the demo store day and its JSON report, errors, ``db upgrade``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storefront.cli import app

REPORT_KEYS = {
    "shoppers", "enrolled", "entered", "identified_correctly", "misidentified",
    "not_identified", "sessions_paid", "sessions_to_staffed_checkout",
    "receipts_matching_expected", "events_ingested", "duplicate_events_ignored",
    "identify_ms_p50", "identify_ms_p99", "exit_to_receipt_ms_p50", "exit_to_receipt_ms_p99",
}


def _run(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env=env, catch_exceptions=False)


def _check_report(report: dict[str, Any], shoppers: int) -> None:
    missing = REPORT_KEYS - set(report)
    assert not missing, f"report lacks {sorted(missing)}"
    assert report["shoppers"] == shoppers
    assert report["misidentified"] == 0
    assert report["receipts_matching_expected"] == report["receipts"]
    assert report["enrolled"] <= shoppers and report["enrolled"] >= 0.8 * shoppers
    assert report["entered"] == report["identified_correctly"]
    assert report["identified_correctly"] >= 0.8 * shoppers
    assert report["identified_correctly"] + report["not_identified"] \
        + report.get("ambiguous", 0) <= shoppers
    assert report["sessions_paid"] == report["receipts"] <= report["entered"]
    assert report["staffed_carts_matching_expected"] == report["staffed_carts_priced"]
    assert report["sessions_paid"] + report["sessions_to_staffed_checkout"] == report["entered"]
    assert report["events_ingested"] > 0
    assert report["duplicate_events_ignored"] >= 0
    for key in ("identify_ms_p50", "identify_ms_p99", "exit_to_receipt_ms_p50",
                "exit_to_receipt_ms_p99"):
        assert isinstance(report[key], int | float) and report[key] >= 0, key
    assert report["identify_ms_p50"] <= report["identify_ms_p99"]
    assert report["exit_to_receipt_ms_p50"] <= report["exit_to_receipt_ms_p99"]


def test_demo_synthetic_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(["demo", "--shoppers", "8", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    _check_report(report, 8)
    assert report["palms"] == "synthetic"
    assert "identified_correctly" in result.output  # the summary table


def test_demo_no_declines_pays_everyone(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(["demo", "--shoppers", "8", "--decline-rate", "0", "--report", str(out),
                   "--data-dir", str(tmp_path / "kept")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    _check_report(report, 8)
    assert report["sessions_paid"] == report["entered"] == report["identified_correctly"]
    assert report["sessions_to_staffed_checkout"] == 0
    assert (tmp_path / "kept").is_dir() and any((tmp_path / "kept").iterdir())


def test_demo_receipts_count_only_issued_receipts(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(["demo", "--shoppers", "4", "--decline-rate", "1", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["sessions_paid"] == 0
    assert report["sessions_to_staffed_checkout"] == report["entered"] > 0
    assert report["receipts"] == 0
    assert report["staffed_carts_priced"] == report["staffed_carts_matching_expected"] > 0


@pytest.mark.realdata
def test_demo_on_real_palms_and_baskets(tmp_path: Path, tongji_dir: Path,
                                        data_dir: Path) -> None:
    baskets = data_dir / "retail" / "online-retail-ii" / "online_retail_II_2009-2010.csv.gz"
    if not baskets.is_file():
        pytest.skip(f"{baskets} is missing")
    out = tmp_path / "report.json"
    result = _run(["demo", "--palms", str(tongji_dir), "--baskets", str(baskets),
                   "--shoppers", "20", "--report", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    _check_report(report, 20)
    assert report["palms"] == str(tongji_dir)
    assert report["invoices_read"] > 0


def test_demo_missing_palms_folder_is_a_readable_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--palms", "/nonexistent",
                                      "--report", str(tmp_path / "r.json")])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "/nonexistent" in result.output and "manifest.csv" in result.output
    assert not (tmp_path / "r.json").exists()


def test_db_upgrade(tmp_path: Path) -> None:
    result = _run(["db", "upgrade"], env={"STOREFRONT_STATE_DIR": str(tmp_path),
                                          "STOREFRONT_DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert "revision" in result.output
    assert any(tmp_path.iterdir()), "no database file was created under the data dir"
    again = _run(["db", "upgrade"], env={"STOREFRONT_STATE_DIR": str(tmp_path),
                                         "STOREFRONT_DATABASE_URL": ""})
    assert again.exit_code == 0 and again.output == result.output
