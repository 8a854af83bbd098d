"""``storefront serve`` checks first that it can listen, then the database, and only then
creates what start-up needs (state folder, key files, the simulated processor's state
file): a refusal on the port or the database leaves nothing behind."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from storefront.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           tmp_path: Path, port: int, env: dict[str, str]) -> str:
    """``storefront serve --port PORT`` in this process: exit 2, one line; its output."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT",
                 "STOREFRONT_PAYMENT_PROCESSOR", "STOREFRONT_REVOCABLE_KEY_FILE",
                 "STOREFRONT_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(tmp_path / "sim" / "proc.db"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.argv", ["storefront", "serve", "--port", str(port)])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    text = out.out + out.err
    assert stop.value.code == 2, text
    assert len(text.strip().splitlines()) == 1, text
    assert "Traceback" not in text and "Uvicorn running" not in text
    return text


def test_a_port_in_use_is_refused_first_creating_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _serve(monkeypatch, capsys, tmp_path, port, {})
    assert out.startswith(f"error: cannot listen on 127.0.0.1:{port} ")
    assert "STOREFRONT_PORT" in out
    assert not (tmp_path / "state").exists() and not (tmp_path / "sim").exists()


def test_an_unreachable_database_is_refused_before_anything_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/shop"
    out = _serve(monkeypatch, capsys, tmp_path, _free_port(), {"STOREFRONT_DATABASE_URL": url})
    assert "cannot use the database" in out and "(STOREFRONT_DATABASE_URL)" in out
    assert not (tmp_path / "state").exists()  # no keys/kek.key, keys/revocable.key
    assert not (tmp_path / "sim").exists()  # no simulated processor state


def test_a_database_from_a_newer_version_is_refused_before_keys_are_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "storefront.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    before = (state / "storefront.db").read_bytes()
    out = _serve(monkeypatch, capsys, tmp_path, _free_port(), {})
    assert "cannot migrate the database sqlite:///" in out and "9999_from_the_future" in out
    assert sorted(p.name for p in state.iterdir()) == ["storefront.db"]  # no keys
    assert (state / "storefront.db").read_bytes() == before
    assert not (tmp_path / "sim").exists()


def test_a_file_that_is_not_a_database_is_refused_before_keys_are_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "storefront.db").write_bytes(b"not a database at all, " * 50)
    out = _serve(monkeypatch, capsys, tmp_path, _free_port(), {})
    assert "is not a storefront database" in out and "STOREFRONT_STATE_DIR" in out
    assert sorted(p.name for p in state.iterdir()) == ["storefront.db"]
