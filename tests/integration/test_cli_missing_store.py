"""A command that only makes sense on an existing store refuses a store that is not there
(a mistyped ``STOREFRONT_STATE_DIR``, a database without the storefront schema, a missing
key-encryption key) with exit 2 and creates nothing; the commands that set a store up
(``db upgrade``, ``staff add``) still create it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from storefront.cli import app

EXISTING_STORE_COMMANDS = [
    ["audit", "verify"],
    ["keys", "rotate"],
    ["staff", "list"],
    ["staff", "disable", "ann"],
    ["staff", "enable", "ann"],
    ["staff", "reset-password", "ann"],
    ["staff", "reset-totp", "ann"],
    ["staff", "set-role", "ann", "--role", "cashier"],
    ["privacy", "sweep"],
    ["privacy", "delete", "--shopper", "shp_1", "--yes"],
    ["devices", "revoke", "gate-1"],
    ["devices", "rotate-key", "gate-1"],
    ["devices", "run"],
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    monkeypatch.delenv("STOREFRONT_KEY_FILE", raising=False)
    return CliRunner()


@pytest.mark.parametrize("command", [*EXISTING_STORE_COMMANDS,
                                     ["privacy", "export", "--shopper", "shp_1", "--out",
                                      "{tmp}/out.zip"]])
def test_a_mistyped_state_dir_is_refused_and_nothing_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner,
        command: list[str]) -> None:
    typo = tmp_path / "typo"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(typo))
    result = runner.invoke(app, [part.format(tmp=tmp_path) for part in command], input="")
    assert result.exit_code == 2, result.output
    assert f"no database at {typo / 'storefront.db'}" in result.output
    assert "nothing was created" in result.output and "password" not in result.output
    assert not typo.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", EXISTING_STORE_COMMANDS[:4])
def test_a_postgres_database_without_the_schema_is_refused_and_left_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner, postgres_url: str,
        command: list[str]) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", postgres_url)
    result = runner.invoke(app, command, input="")
    assert result.exit_code == 2, result.output
    assert "has no storefront schema" in result.output and "nothing was created" in result.output
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert not (tmp_path / "state").exists()


def test_a_store_without_its_key_is_refused_before_a_new_key_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    """A database made by ``db upgrade`` alone: the staff and privacy commands would
    otherwise make a new key-encryption key that opens none of the store's secrets."""
    state = tmp_path / "state"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    for command in (["staff", "list"], ["privacy", "sweep"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"no key-encryption key at {state / 'keys' / 'kek.key'}" in result.output
    assert not (state / "keys").exists() and not (state / "index").exists()
    audit = runner.invoke(app, ["audit", "verify"])  # needs no key
    assert audit.exit_code == 0 and "audit chain intact: 0 entries" in audit.output


def test_a_file_that_is_not_a_database_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "storefront.db").write_bytes(b"not a database at all" * 100)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 2 and "is not a storefront database" in result.output
    assert (state / "storefront.db").read_bytes() == b"not a database at all" * 100


def test_staff_add_still_sets_up_a_new_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    state = tmp_path / "new-store"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    made = runner.invoke(app, ["staff", "add", "ann", "--role", "cashier"],
                         input="correct horse battery\n" * 2)
    assert made.exit_code == 0, made.output
    assert (state / "storefront.db").is_file() and (state / "keys" / "kek.key").is_file()
    listed = runner.invoke(app, ["staff", "list"])
    assert listed.exit_code == 0 and listed.output.startswith("ann\tcashier\tenabled")
