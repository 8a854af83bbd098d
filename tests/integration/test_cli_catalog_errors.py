"""``storefront catalog import``: only a bad ``--as-of`` is reported as one; a setting
start-up refuses is named as itself, and any other ValueError is a defect, not a date."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from storefront.cli import app

runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_PAYMENT_PROCESSOR",
                 "STOREFRONT_STRIPE_API_KEY", "STOREFRONT_PAYMENT_SIM_STATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    prices = tmp_path / "prices.csv"
    prices.write_text("x\n", encoding="utf-8")
    return prices


def test_a_bad_as_of_date_is_named(store: Path) -> None:
    result = runner.invoke(app, ["catalog", "import", "--prices", str(store),
                                 "--as-of", "2024-13-45"])
    assert result.exit_code == 2
    assert result.output.startswith("error: bad --as-of date:")


def test_a_setting_error_of_start_up_is_not_a_bad_date(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_PAYMENT_PROCESSOR", "stripe")
    result = runner.invoke(app, ["catalog", "import", "--prices", str(store)])
    assert result.exit_code == 2, result.output
    assert "as-of" not in result.output
    assert "STOREFRONT_STRIPE_API_KEY is required" in result.output


def test_a_value_error_of_the_import_is_not_a_bad_date(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a defect in the importer")

    monkeypatch.setattr("storefront.catalog_import.import_israeli_catalogue", broken)
    result = runner.invoke(app, ["catalog", "import", "--prices", str(store)])
    assert "as-of" not in result.output
    assert isinstance(result.exception, ValueError)  # a defect keeps its traceback
