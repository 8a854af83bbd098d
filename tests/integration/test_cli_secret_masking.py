"""A database password never shows in a command's output: not when it is given as a
query parameter (``?password=...``), not when it holds an unescaped ``@`` (SQLAlchemy
then takes part of it for the host, and the driver's "failed to resolve host" message
repeats it). Every command that opens the database ends on one line naming the setting;
the commands that catch database errors themselves (``devices list`` / ``prune``,
``identity retired`` / ``rotate-transform``) too. One-line errors never wrap and print
file names verbatim (rich markup escaped)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from storefront.cli import main
from storefront.cli_errors import _scrub, shown_url

QUERY_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/sf_nosuchdb?password=QuerySecret1"
AT_URL = "postgresql+psycopg://postgres:Pa@ssSecret2@127.0.0.1:5432/db"
SECRETS = ("QuerySecret1", "ssSecret2", "Pa@ss")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
         argv: list[str], env: dict[str, str]) -> tuple[int | str | None, str]:
    """Run ``storefront argv`` in this process; returns (exit code, stdout + stderr)."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT",
                 "STOREFRONT_PAYMENT_PROCESSOR", "STOREFRONT_PAYMENT_SIM_STATE",
                 "STOREFRONT_REVOCABLE_KEY_FILE", "STOREFRONT_STRIPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.argv", ["storefront", *argv])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out + out.err


def _keys(tmp_path: Path) -> None:
    """Key files, so that ``identity retired`` / ``rotate-transform`` reach the database."""
    keys = tmp_path / "state" / "keys"
    keys.mkdir(parents=True)
    for name in ("kek.key", "revocable.key"):
        (keys / name).write_bytes(os.urandom(32))
        (keys / name).chmod(0o600)


COMMANDS = [["serve", "--port", "{port}"], ["db", "upgrade"], ["audit", "verify"],
            ["staff", "list"], ["keys", "rotate"], ["privacy", "sweep"],
            ["payments", "reconcile"], ["catalog", "import", "--prices", "{prices}"],
            ["devices", "list"], ["devices", "prune"], ["identity", "retired"],
            ["identity", "rotate-transform"]]


@pytest.mark.parametrize("url", [QUERY_URL, AT_URL], ids=["query-password", "at-in-password"])
@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_no_command_prints_the_database_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str], url: str) -> None:
    _keys(tmp_path)
    prices = tmp_path / "prices.csv"
    prices.write_text("x\n")
    argv = [a.format(port=_free_port(), prices=prices) for a in command]
    env = {"STOREFRONT_DATABASE_URL": url, "STOREFRONT_PAYMENT_SIM_STATE": str(
        tmp_path / "proc.db")}
    (tmp_path / "proc.db").write_bytes(b"")
    code, out = _run(monkeypatch, capsys, tmp_path, argv, env)
    assert code == 2, out
    for secret in SECRETS:
        assert secret not in out
    assert len(out.strip().splitlines()) == 1, out
    assert "Traceback" not in out
    assert "STOREFRONT_DATABASE_URL" in out
    assert out.startswith("error: cannot use the database postgresql+psycopg://postgres")


def test_shown_url_masks_the_whole_userinfo_and_secret_query_values() -> None:
    assert shown_url(AT_URL) == "postgresql+psycopg://postgres:***@127.0.0.1:5432/db"
    assert shown_url(QUERY_URL) == ("postgresql+psycopg://postgres@127.0.0.1:5432/sf_nosuchdb"
                                    "?password=***")
    assert shown_url("postgresql://u@h/db?sslmode=require&sslpassword=Ssl1Secret&pwd=x"
                     "&api_token=Tok1Secret&db_key=K3y1") == (
        "postgresql://u@h/db?sslmode=require&sslpassword=***&pwd=***&api_token=***"
        "&db_key=***")
    assert shown_url("postgresql://u:pa/ss@h:5/db") == "postgresql://u:***@h:5/db"
    assert shown_url("sqlite:////tmp/x/storefront.db") == "sqlite:////tmp/x/storefront.db"


def test_driver_messages_are_scrubbed_of_password_pieces() -> None:
    said = "failed to resolve host 'ssSecret2@127.0.0.1': [Errno -2] Name or service"
    assert _scrub(said, AT_URL) == ("failed to resolve host '***@127.0.0.1': [Errno -2] "
                                     "Name or service")
    short = "postgresql+psycopg://postgres:ab@cd@127.0.0.1:5432/db"
    assert "cd@" not in _scrub("failed to resolve host 'cd@127.0.0.1'", short)
    assert "QuerySecret1" not in _scrub(f"conninfo {QUERY_URL} password=QuerySecret1",
                                        QUERY_URL)


@pytest.mark.parametrize("command", [["devices", "list"], ["devices", "prune"],
                                     ["identity", "retired"],
                                     ["identity", "rotate-transform"]])
def test_caught_database_errors_are_one_line_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str]) -> None:
    """A server that does not answer: the commands that catch SQLAlchemyError themselves
    print one line with the (masked) URL and the setting, not the driver's lines."""
    _keys(tmp_path)
    url = f"postgresql+psycopg://postgres:Closed1Secret@127.0.0.1:{_free_port()}/db"
    code, out = _run(monkeypatch, capsys, tmp_path, command, {"STOREFRONT_DATABASE_URL": url})
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1, out
    assert "Closed1Secret" not in out and "sqlalche.me" not in out
    assert "postgres:***@127.0.0.1" in out and "(STOREFRONT_DATABASE_URL)" in out


def test_one_line_errors_do_not_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A long state path (no database there): one line however narrow the console."""
    monkeypatch.setenv("COLUMNS", "60")
    long = tmp_path / ("a-rather-long-folder-name-" * 4) / "state"
    code, out = _run(monkeypatch, capsys, tmp_path, ["devices", "list"],
                     {"STOREFRONT_STATE_DIR": str(long)})
    assert code == 2
    assert len(out.strip().splitlines()) == 1, out
    assert str(long) in out


def test_markup_in_a_file_name_is_printed_verbatim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "[red]x.csv.gz"
    bad.write_bytes(b"garbage!")
    code, out = _run(monkeypatch, capsys, tmp_path, ["catalog", "import", "--prices", str(bad)],
                     {"STOREFRONT_CURRENCY": "ILS"})
    assert code == 2, out
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "[red]x.csv.gz" in error[0], out
