"""``storefront payments reconcile`` with the simulated processor refuses a
STOREFRONT_PAYMENT_SIM_STATE that names no existing file (it would ask an empty
processor and record the server's calls as never made), creating nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from storefront.bootstrap import bootstrap
from storefront.cli import app
from storefront.settings import Settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An existing store (database and keys) with the simulated processor in memory."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_PAYMENT_PROCESSOR",
                 "STOREFRONT_PAYMENT_SIM_STATE", "STOREFRONT_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    bootstrap(Settings(), reconcile_payments=False).close()
    return tmp_path


@pytest.mark.parametrize("where", ["missing.db", "no/such/folder/proc.db"])
def test_a_missing_state_file_is_refused_creating_nothing(
        store: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    state = store / where
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(state))
    result = CliRunner().invoke(app, ["payments", "reconcile"])
    assert result.exit_code == 2, result.output
    assert f"STOREFRONT_PAYMENT_SIM_STATE={state} does not exist" in " ".join(
        result.output.split())
    assert len(result.output.strip().splitlines()) == 1
    assert not state.exists() and not (store / "no").exists()


def test_a_folder_is_not_a_state_file(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(store))
    result = CliRunner().invoke(app, ["payments", "reconcile"])
    assert result.exit_code == 2, result.output
    assert "is not a file" in result.output
