"""``storefront serve`` checks the configuration before the server starts: each problem
start-up would meet (the payment processor, the database URL, server, driver and
migrations, the key files, the state paths) ends it with one line naming the setting and
exit code 2, no traceback, no server, and never a database password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from storefront.cli import main

PASSWORD = "s3cret-pw-42"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           tmp_path: Path, env: dict[str, str]) -> str:
    """Run ``storefront serve`` in this process with ``env``; returns its output, having
    checked exit 2, one line, no traceback, no server."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT",
                 "STOREFRONT_PAYMENT_PROCESSOR", "STOREFRONT_PAYMENT_SIM_STATE",
                 "STOREFRONT_REVOCABLE_KEY_FILE", "STOREFRONT_STRIPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setattr("sys.argv", ["storefront", "serve", "--port", str(_free_port())])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    text = out.out + out.err
    assert stop.value.code == 2, text
    assert "Traceback" not in text and "Uvicorn running" not in text
    assert len(text.strip().splitlines()) == 1, text
    assert PASSWORD not in text
    return text


@pytest.mark.parametrize(("env", "says"), [
    ({"STOREFRONT_PAYMENT_PROCESSOR": "stripe"},
     "STOREFRONT_STRIPE_API_KEY is required"),
    ({"STOREFRONT_DATABASE_URL": "notaurl"}, "STOREFRONT_DATABASE_URL is not a database URL"),
    ({"STOREFRONT_DATABASE_URL": f"mysql://user:{PASSWORD}@127.0.0.1/shop"},
     "database driver for mysql://user:***@127.0.0.1/shop (STOREFRONT_DATABASE_URL) is not "
     "installed"),
    ({"STOREFRONT_DATABASE_URL": f"nosuch://user:{PASSWORD}@127.0.0.1/shop"},
     "no database dialect or driver for nosuch://user:***@127.0.0.1/shop"),
    ({"STOREFRONT_PAYMENT_SIM_STATE": "{tmp}/afile/proc.db"},
     "STOREFRONT_PAYMENT_SIM_STATE={tmp}/afile/proc.db cannot be used: {tmp}/afile is not a "
     "folder"),
    ({"STOREFRONT_PAYMENT_SIM_STATE": "{tmp}"}, "STOREFRONT_PAYMENT_SIM_STATE={tmp} cannot be"),
    ({"STOREFRONT_STATE_DIR": "/proc/nope"}, "STOREFRONT_STATE_DIR=/proc/nope cannot be used"),
    ({"STOREFRONT_STATE_DIR": "{tmp}/afile/state"},
     "STOREFRONT_STATE_DIR={tmp}/afile/state cannot be used: {tmp}/afile is not a folder"),
    ({"STOREFRONT_KEY_FILE": "{tmp}/afile/kek.key"},
     "STOREFRONT_KEY_FILE cannot be used: {tmp}/afile is not a folder"),
    ({"STOREFRONT_DATABASE_URL": "sqlite:///{tmp}/afile/storefront.db"},
     "STOREFRONT_DATABASE_URL: the database sqlite:///{tmp}/afile/storefront.db cannot be "
     "used: {tmp}/afile is not a folder"),
])
def test_a_bad_setting_stops_serve_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], says: str) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    out = _serve(monkeypatch, capsys, tmp_path, env)
    assert says.format(tmp=tmp_path) in out


def test_production_without_the_revocable_key_stops_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "state" / "keys"
    keys.mkdir(parents=True)
    kek = keys / "kek.key"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    out = _serve(monkeypatch, capsys, tmp_path, {"STOREFRONT_ENVIRONMENT": "production"})
    assert f"key file {keys / 'revocable.key'} does not exist" in out
    assert "STOREFRONT_REVOCABLE_KEY_FILE" in out
    assert not (tmp_path / "state" / "storefront.db").exists()  # stopped before the database


def test_postgres_that_does_not_answer_or_does_not_exist_stops_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        postgres_url: str) -> None:
    base = postgres_url.rsplit("/", 1)[0].replace("postgres@", f"postgres:{PASSWORD}@")
    missing = f"{base}/sf_no_such_database"
    out = _serve(monkeypatch, capsys, tmp_path, {"STOREFRONT_DATABASE_URL": missing})
    assert "cannot use the database postgresql+psycopg://postgres:***@" in out
    assert 'database "sf_no_such_database" does not exist' in out
    closed = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{_free_port()}/shop"
    out = _serve(monkeypatch, capsys, tmp_path, {"STOREFRONT_DATABASE_URL": closed})
    assert "cannot use the database postgresql+psycopg://postgres:***@127.0.0.1:" in out
    assert "(STOREFRONT_DATABASE_URL)" in out


def test_a_database_newer_than_this_version_stops_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A database at a revision this version does not ship (written by a newer one)."""
    import sqlite3

    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "storefront.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    out = _serve(monkeypatch, capsys, tmp_path, {})
    assert "cannot migrate the database sqlite:///" in out
    assert "9999_from_the_future" in out and "(STOREFRONT_STATE_DIR)" in out


def test_serve_as_a_process_prints_one_line_without_a_traceback(tmp_path: Path) -> None:
    """The console script itself (uvicorn's logging not yet set up): one line, exit 2."""
    cli = Path(sys.executable).parent / "storefront"
    env = {**os.environ, "STOREFRONT_STATE_DIR": str(tmp_path / "state"),
           "STOREFRONT_DATABASE_URL": f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:"
                                      f"{_free_port()}/shop"}
    done = subprocess.run([str(cli), "serve", "--port", str(_free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert out.startswith("error: cannot use the database postgresql+psycopg://postgres:***@")
    assert len(out.strip().splitlines()) == 1 and PASSWORD not in out
