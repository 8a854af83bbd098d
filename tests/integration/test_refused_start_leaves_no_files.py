"""A command refused because of a bad key-encryption key file leaves the state folder as
it found it: no SQLite file made, no ``-wal``/``-shm`` files left behind (nor removed),
the database's bytes unchanged, nothing migrated.

The defect this guards against: ``storefront serve`` opened an existing SQLite file read
only to check its migration state before it read the key file; in WAL mode that
connection made ``-wal``/``-shm`` files it could not remove, so a refused start left
them behind. ``staff add`` and ``devices add`` on a new state folder made (and migrated)
the database before reading the key file, and the commands that open an existing store
removed ``-wal``/``-shm`` files that were there before.

Each case: a fixed key file (empty, truncated, of the wrong length, garbage, a folder, a
group-readable file, another store's key, a placeholder in production, missing in
production), a state folder (new, a store without ``-wal``/``-shm``, one with them, a
store holding a sealed device key), a command; exit 2, the reason in the one error
line, and the folder's files (names, bytes, modes; ``-shm`` presence only) unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from storefront.bootstrap import bootstrap
from storefront.cli import main
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.devices.service import device_registry
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings

KEY_BYTES = 32
GARBAGE = b"this is not a key-encryption key\n" * 3  # 99 bytes of text
SUBPROCESS_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_key(data: bytes, mode: int = 0o600) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)
        path.chmod(mode)
    return write


def _folder(path: Path) -> None:
    path.mkdir()


# name -> (how to make the key file at a path, phrases of which the error names one)
MALFORMED: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "empty": (_write_key(b""), ("holds 0 bytes, expected 32",)),
    "truncated": (_write_key(bytes(range(1, 17))), ("holds 16 bytes, expected 32",)),
    "too long": (_write_key(bytes(range(1, 34))), ("holds 33 bytes, expected 32",)),
    "garbage": (_write_key(GARBAGE), (f"holds {len(GARBAGE)} bytes, expected 32",)),
    # a folder: serve and bootstrap say "not a regular file"; the commands that check
    # for a key file first say none is there
    "a folder": (_folder, ("is not a regular file", "no key-encryption key at",
                           "does not exist")),
    "group-readable": (_write_key(bytes(range(100, 132)), 0o644),
                       ("is accessible by group or others",)),
}

SERVE = ["serve", "--port", "{port}"]
COMMANDS: dict[str, list[str]] = {
    "serve": SERVE,
    "staff add": ["staff", "add", "bob", "--role", "cashier"],
    "staff list": ["staff", "list"],
    "devices add": ["devices", "add", "cart-9"],
    "devices list": ["devices", "list"],
    "devices revoke": ["devices", "revoke", "cart-1"],
    "privacy sweep": ["privacy", "sweep"],
    "payments reconcile": ["payments", "reconcile"],
    "keys rotate": ["keys", "rotate"],
    "identity retired": ["identity", "retired"],
}
MAKE_A_STORE = ("serve", "staff add", "devices add")
"""Commands that make the store on a new state folder (the others refuse a missing one)."""


def _snapshot(folder: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``folder``: relative path -> (kind, mode, content digest); a
    ``-shm`` file (SQLite's shared-memory index, rewritten by any reader) by presence."""
    seen: dict[str, tuple[str, int, str]] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        name = str(path.relative_to(folder))
        if stat.S_ISDIR(info.st_mode):
            seen[name] = ("folder", mode, "")
        elif name.endswith("-shm"):
            seen[name] = ("file", mode, "present")
        else:
            seen[name] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state: Path,
               env: dict[str, str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in list(os.environ):
        if name.startswith("STOREFRONT_") and name != "STOREFRONT_DATA_DIR":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    sim = tmp_path / "sim.db"  # outside the state folder: reconcile needs an existing one
    sqlite3.connect(sim).close()
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(sim))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         args: list[str]) -> tuple[int, str]:
    """``storefront ARGS`` in this process (the console script's ``main``); returns the
    exit code and the output."""
    argv = [a.format(port=_free_port()) for a in args]
    monkeypatch.setattr("sys.argv", ["storefront", *argv])
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a prompt gets no answer
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 1), out.out + out.err


def _assert_refused(code: int, out: str, key_file: Path, says: tuple[str, ...]) -> None:
    """Exit 2, no traceback, an error line naming the key file and why."""
    assert code == 2, out
    assert "Traceback" not in out and "Uvicorn running" not in out, out
    assert out.lstrip().startswith("error:"), out
    flat = " ".join(out.split())  # whitespace as one space, should a line be wrapped
    assert str(key_file) in flat, out
    assert any(reason in flat for reason in says), out


def _remove_sidecars(db: Path) -> None:
    """Checkpoint and close: SQLite removes ``-wal``/``-shm`` when the last connection of
    a WAL database closes."""
    sqlite3.connect(db).close()
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()


def _leave_sidecars(db: Path) -> None:
    """``-wal``/``-shm`` files as a read-only reader (or a crash) leaves them."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    conn.close()
    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two state folders made once: ``migrated`` (a schema at the latest revision,
    nothing sealed) and ``sealed`` (one device key ``cart-1`` sealed under the KEK);
    each in WAL mode, with its key files, without ``-wal``/``-shm`` files."""
    base = tmp_path_factory.mktemp("refused-start")
    migrated = base / "migrated"
    engine = make_engine(Settings(data_dir=migrated).resolved_database_url())
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    sealed = base / "sealed"
    container = bootstrap(Settings(data_dir=sealed),
                          processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        device_registry(container).add(store_id=container.settings.store_id,
                                       device_id="cart-1", kind="cart")
    finally:
        container.close()
    for folder in (migrated, sealed):
        _remove_sidecars(folder / "storefront.db")
    return {"migrated": migrated, "sealed": sealed}


def _state(kind: str, stores: dict[str, Path], tmp_path: Path) -> Path:
    """A state folder of ``kind``: ``new`` (only a ``keys`` folder), ``store`` (a
    migrated database, no ``-wal``/``-shm``), ``store with -wal/-shm`` or ``sealed``."""
    state = tmp_path / "state"
    if kind == "new":
        (state / "keys").mkdir(parents=True)
        return state
    shutil.copytree(stores["sealed" if kind == "sealed" else "migrated"], state)
    (state / "keys").mkdir(exist_ok=True)
    if kind == "store with -wal/-shm":
        _leave_sidecars(state / "storefront.db")
    return state


def _bad_key(state: Path, make: Callable[[Path], None]) -> Path:
    key_file = state / "keys" / "kek.key"
    if key_file.exists():
        key_file.unlink()
    make(key_file)
    return key_file


@pytest.mark.parametrize("state_kind", ["new", "store", "store with -wal/-shm"])
@pytest.mark.parametrize("key", list(MALFORMED))
def test_serve_refuses_a_malformed_key_file_leaving_the_folder_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stores: dict[str, Path], state_kind: str, key: str) -> None:
    state = _state(state_kind, stores, tmp_path)
    make, says = MALFORMED[key]
    key_file = _bad_key(state, make)
    before = _snapshot(state)
    _clean_env(monkeypatch, tmp_path, state, {})
    code, out = _run(monkeypatch, capsys, SERVE)
    _assert_refused(code, out, key_file, says)
    assert "(STOREFRONT_KEY_FILE or STOREFRONT_STATE_DIR)" in " ".join(out.split())
    assert len(out.strip().splitlines()) == 1, out
    assert _snapshot(state) == before


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("state_kind", ["new", "store", "store with -wal/-shm", "sealed"])
@pytest.mark.parametrize("key", ["empty", "garbage", "a folder"])
def test_commands_that_open_the_store_refuse_a_bad_key_file_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stores: dict[str, Path], command: str, state_kind: str, key: str) -> None:
    state = _state(state_kind, stores, tmp_path)
    make, says = MALFORMED[key]
    key_file = _bad_key(state, make)
    if state_kind == "new" and command not in MAKE_A_STORE:
        says = ("no database at",)  # refused first for the missing store, as before
    before = _snapshot(state)
    _clean_env(monkeypatch, tmp_path, state, {})
    code, out = _run(monkeypatch, capsys, COMMANDS[command])
    if says == ("no database at",):
        assert code == 2 and "no database at" in out, out
    else:
        _assert_refused(code, out, key_file, says)
    assert _snapshot(state) == before


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "devices list"])
@pytest.mark.parametrize("state_kind", ["sealed", "sealed with -wal/-shm"])
def test_another_stores_key_is_refused_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stores: dict[str, Path], command: str, state_kind: str) -> None:
    """A well-formed key file that is not the store's (32 other bytes: corrupt, replaced):
    the store is read to find out, and left as it was. (``devices list`` opens no sealed
    secret, so it lists.)"""
    state = _state("sealed", stores, tmp_path)
    if state_kind == "sealed with -wal/-shm":
        _leave_sidecars(state / "storefront.db")
    key_file = _bad_key(state, _write_key(bytes(range(7, 7 + KEY_BYTES))))
    before = _snapshot(state)
    _clean_env(monkeypatch, tmp_path, state, {})
    code, out = _run(monkeypatch, capsys, COMMANDS[command])
    _assert_refused(code, out, key_file, ("does not open the store's data keys",))
    assert _snapshot(state) == before


@pytest.mark.parametrize("state_kind", ["new", "store", "store with -wal/-shm"])
@pytest.mark.parametrize("command", ["serve", "staff add", "devices add", "staff list"])
def test_production_refuses_a_placeholder_or_missing_key_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stores: dict[str, Path], state_kind: str, command: str) -> None:
    """Outside development a typed (placeholder) key, and a key file that is not there,
    are refused before the database is opened."""
    for case, make, says in (
            ("placeholder", _write_key(b"a" * KEY_BYTES), ("holds a placeholder key",)),
            ("missing", None, ("does not exist", "no key-encryption key at"))):
        root = tmp_path / case
        root.mkdir()
        state = _state(state_kind, stores, root)
        key_file = state / "keys" / "kek.key"
        key_file.unlink(missing_ok=True)
        if make is not None:
            make(key_file)
        before = _snapshot(state)
        _clean_env(monkeypatch, root, state, {"STOREFRONT_ENVIRONMENT": "production"})
        code, out = _run(monkeypatch, capsys, COMMANDS[command])
        if state_kind == "new" and command not in MAKE_A_STORE:
            assert code == 2 and "no database at" in out, out
        else:
            _assert_refused(code, out, key_file, says)
        assert _snapshot(state) == before, case


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads a file whatever its mode")
@pytest.mark.parametrize("state_kind", ["store", "store with -wal/-shm"])
def test_an_unreadable_key_file_is_refused_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stores: dict[str, Path], state_kind: str) -> None:
    state = _state(state_kind, stores, tmp_path)
    key_file = _bad_key(state, _write_key(bytes(range(1, 33)), 0o000))
    before = _snapshot(state)
    _clean_env(monkeypatch, tmp_path, state, {})
    code, out = _run(monkeypatch, capsys, SERVE)
    _assert_refused(code, out, key_file, ("Permission denied",))
    assert _snapshot(state) == before


def test_serve_as_a_process_leaves_no_wal_or_shm_files(
        tmp_path: Path, stores: dict[str, Path]) -> None:
    """The reported defect, through the console script: an existing store, an empty key
    file; exit 2 with the reason, and no ``storefront.db-wal``/``-shm`` afterwards."""
    state = _state("store", stores, tmp_path)
    key_file = _bad_key(state, MALFORMED["empty"][0])
    before = _snapshot(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update(STOREFRONT_STATE_DIR=str(state), COLUMNS="400")
    cli = Path(sys.executable).parent / "storefront"
    done = subprocess.run([str(cli), "serve", "--port", str(_free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert out.strip() == (f"error: key file {key_file} holds 0 bytes, expected 32 "
                           f"(STOREFRONT_KEY_FILE or STOREFRONT_STATE_DIR)")
    assert sorted(p.name for p in state.iterdir()) == ["keys", "storefront.db"]
    assert _snapshot(state) == before


@pytest.mark.parametrize("sidecars", [False, True])
def test_reading_engine_reads_and_leaves_the_files_as_they_were(
        tmp_path: Path, stores: dict[str, Path], sidecars: bool) -> None:
    """:func:`storefront.db.existing.reading_engine` (the checks' connection): reads a
    WAL database, refuses to write, and leaves its ``-wal``/``-shm`` files as found."""
    import sqlalchemy as sa

    from storefront.db.existing import reading_engine

    state = _state("store", stores, tmp_path)
    db = state / "storefront.db"
    if sidecars:
        _leave_sidecars(db)
    before = _snapshot(state)
    engine = reading_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert "shoppers" in sa.inspect(conn).get_table_names()
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                conn.execute(sa.text("CREATE TABLE intruder (x INTEGER)"))
    finally:
        engine.dispose()
    assert _snapshot(state) == before
    missing = reading_engine(f"sqlite:///{state / 'nope.db'}")
    try:
        with pytest.raises(sa.exc.OperationalError):
            missing.connect().close()
    finally:
        missing.dispose()
    assert not (state / "nope.db").exists()
