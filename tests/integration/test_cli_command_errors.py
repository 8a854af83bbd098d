"""Commands other than ``serve`` meeting a configuration problem (an unreachable or
unparseable database, an unknown revision) end with one line and exit code 2, no
traceback and no password; an unexpected error keeps its traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from alembic.util.exc import CommandError
from sqlalchemy.exc import ArgumentError

from storefront.cli import main
from storefront.cli_errors import ConfigError, explain, shown_url
from storefront.settings import Settings

PASSWORD = "s3cret-pw-42"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
         command: list[str], database_url: str | None = None) -> str:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    if database_url is None:
        monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("STOREFRONT_DATABASE_URL", database_url)
    monkeypatch.setattr("sys.argv", ["storefront", *command])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    text = out.out + out.err
    assert stop.value.code == 2, text
    assert "Traceback" not in text and PASSWORD not in text
    assert len(text.strip().splitlines()) == 1, text
    return text


@pytest.mark.parametrize("command", [["db", "upgrade"], ["keys", "rotate"], ["audit", "verify"],
                                     ["staff", "list"], ["privacy", "sweep"],
                                     ["payments", "reconcile"]])
def test_an_unreachable_postgres_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str]) -> None:
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{_closed_port()}/shop"
    out = _run(monkeypatch, capsys, tmp_path, command, url)
    assert "cannot use the database postgresql+psycopg://postgres:***@127.0.0.1:" in out
    assert "(STOREFRONT_DATABASE_URL)" in out
    if command != ["payments", "reconcile"]:  # which still makes the state folder first
        assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("command", [["audit", "verify"], ["db", "upgrade"], ["keys", "rotate"],
                                     ["staff", "list"]])
def test_a_garbage_database_url_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str]) -> None:
    out = _run(monkeypatch, capsys, tmp_path, command, "garbage")
    assert "STOREFRONT_DATABASE_URL is not a usable database URL" in out


def test_an_unknown_revision_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(monkeypatch, capsys, tmp_path, ["db", "upgrade", "nonexistent_rev"])
    assert "cannot migrate the database sqlite:///" in out
    assert "Can't locate revision identified by 'nonexistent_rev'" in out


def test_db_upgrade_still_creates_and_migrates_a_new_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    monkeypatch.setattr("sys.argv", ["storefront", "db", "upgrade"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    assert "database at revision" in capsys.readouterr().out
    assert (tmp_path / "state" / "storefront.db").is_file()


def test_explain_maps_known_errors_and_leaves_defects_alone() -> None:
    settings = Settings(database_url=f"postgresql+psycopg://u:{PASSWORD}@db.example:5432/x")
    assert explain(RuntimeError("a bug"), settings) is None
    assert explain(KeyError("x"), settings) is None
    assert explain(OSError("no file name"), settings) is None  # not a path problem
    assert explain(ConfigError("STOREFRONT_X is wrong"), settings) == "STOREFRONT_X is wrong"
    said = explain(CommandError(f"Can't locate revision (url {settings.database_url})"),
                   settings)
    assert said is not None and PASSWORD not in said
    assert "postgresql+psycopg://u:***@db.example:5432/x" in said
    said = explain(ArgumentError("Could not parse SQLAlchemy URL"), settings)
    assert said is not None and said.startswith("STOREFRONT_DATABASE_URL is not a usable")
    assert shown_url(f"postgres//u:{PASSWORD}@host") == "(not a database URL)"


def test_an_unexpected_error_keeps_its_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only configuration problems are turned into one line: a defect propagates."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr("storefront.db.migrate.upgrade", broken)
    monkeypatch.setattr("sys.argv", ["storefront", "db", "upgrade"])
    with pytest.raises(RuntimeError, match="a defect"):
        main()
