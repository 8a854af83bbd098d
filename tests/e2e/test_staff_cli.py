"""``storefront staff add``: an unusable id, role or taken id is refused before the
password is asked for; a good one is created with its TOTP secret shown once."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from storefront.cli import app

PASSWORD = "correct horse battery\n"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    return CliRunner()


def test_bad_role_or_id_is_refused_without_asking_for_a_password(runner: CliRunner) -> None:
    for args in (["staff", "add", "ann", "--role", "janitor"],
                 ["staff", "add", "ann/1", "--role", "cashier"]):
        result = runner.invoke(app, args, input="")
        assert result.exit_code == 2, result.output
        assert "password" not in result.output.lower()
    assert "is not one of" in runner.invoke(app, ["staff", "add", "ann", "--role",
                                                  "janitor"]).output


def test_taken_id_is_refused_before_the_prompt_and_a_new_one_is_added(
        runner: CliRunner) -> None:
    made = runner.invoke(app, ["staff", "add", "mia", "--role", "manager"],
                         input=PASSWORD * 2)
    assert made.exit_code == 0, made.output
    assert "staff mia added as manager" in made.output and "otpauth://" in made.output
    again = runner.invoke(app, ["staff", "add", "mia", "--role", "cashier"], input="")
    assert again.exit_code == 2 and "is taken" in again.output
    assert "password" not in again.output.lower()
    short = runner.invoke(app, ["staff", "add", "bo", "--role", "cashier"],
                          input="short\nshort\n")
    assert short.exit_code == 2 and "12 to 1024" in short.output
