"""A key-encryption key (KEK) file that exists and is readable but does not open the
store's data keys (replaced by another valid key after the store was made): ``storefront
serve`` refuses before the server starts, and the commands that open the store refuse,
all with the same one line naming STOREFRONT_KEY_FILE and exit code 2 (no traceback).
The store's own key, or its previous key during a rotation, is accepted; a defect in
the check keeps its traceback."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from identity.errors import TemplateDecryptionError
from identity.imageio import encode_png
from identity.protection import key_id_for, load_or_create_key_file
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import bootstrap
from storefront.cli import main
from storefront.cli_errors import KekMismatch, explain, require_kek_opens_store
from storefront.db.engine import make_engine
from storefront.db.models import PalmTemplate
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from storefront.subject_keys import (
    KekFiles,
    ReloadingKeyProvider,
    SqlSubjectKeyStore,
    StoreKeyring,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def made_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    """A store with one shopper's palm enrolled (so one data key wrapped under the KEK);
    returns (state folder, the shopper's id, the original key file's bytes)."""
    data_dir = tmp_path_factory.mktemp("kek") / "store"
    palms = SyntheticPalms(4242)
    c = bootstrap(Settings(data_dir=data_dir),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        sid = c.shoppers.register(display_name="Ada", payment_token="tok_ada").id
        c.shoppers.enrol_palm(shopper_id=sid,
                              images=[encode_png(palms.capture(0, k)) for k in range(4)],
                              consent_text_version="2026-11")
    finally:
        c.close()
    return data_dir, sid, Settings(data_dir=data_dir).resolved_key_file().read_bytes()


@pytest.fixture
def store(made_store: tuple[Path, str, bytes], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, bytes]:
    """A copy of the made store whose key file was replaced by another valid key; the
    environment points the CLI at it. Returns (state folder, shopper id, original KEK)."""
    source, sid, original = made_store
    data_dir = tmp_path / "store"
    shutil.copytree(source, data_dir)
    key_file = Settings(data_dir=data_dir).resolved_key_file()
    key_file.unlink()
    load_or_create_key_file(key_file, create=True)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(data_dir))
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT",
                 "STOREFRONT_PAYMENT_PROCESSOR", "STOREFRONT_PAYMENT_SIM_STATE"):
        monkeypatch.delenv(name, raising=False)
    return data_dir, sid, original


def _expected(data_dir: Path, original: bytes) -> str:
    key_file = Settings(data_dir=data_dir).resolved_key_file()
    held = key_id_for(key_file.read_bytes())
    return (f"error: STOREFRONT_KEY_FILE: the key file {key_file} holds KEK {held!r}, which "
            f"does not open the store's data keys (1 data key(s) wrapped under KEK "
            f"{key_id_for(original)!r}, which no key file holds): the key file was replaced "
            f"or is another store's; put back the key the store was made with (check "
            f"STOREFRONT_KEY_FILE and STOREFRONT_STATE_DIR)")


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         command: list[str]) -> tuple[int | str | None, str]:
    monkeypatch.setattr("sys.argv", ["storefront", *command])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return stop.value.code, out.out + out.err


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """uvicorn.run recorded, not run."""
    calls: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    return calls


def test_serve_refuses_a_replaced_key_file_in_one_line(
        store: tuple[Path, str, bytes], started: list[object],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _, original = store
    code, text = _run(monkeypatch, capsys, ["serve", "--port", str(_free_port())])
    assert code == 2 and started == [], text
    assert text.strip() == _expected(data_dir, original)
    assert "Traceback" not in text


def test_serve_starts_with_the_store_s_own_key(
        store: tuple[Path, str, bytes], started: list[object],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _, original = store
    Settings(data_dir=data_dir).resolved_key_file().write_bytes(original)
    code, text = _run(monkeypatch, capsys, ["serve", "--port", str(_free_port())])
    assert code == 0 and len(started) == 1, text


@pytest.mark.parametrize("command", [
    ["privacy", "sweep"], ["privacy", "export", "--shopper", "{sid}", "--out", "x.zip"],
    ["privacy", "delete", "--shopper", "{sid}", "--yes"], ["payments", "reconcile"],
    ["staff", "list"], ["devices", "add", "cart-9"], ["devices", "revoke", "cart-9"],
    ["devices", "rotate-key", "cart-9"], ["devices", "run"], ["keys", "rotate"]])
def test_the_commands_that_open_the_store_give_the_same_line(
        store: tuple[Path, str, bytes], command: list[str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, sid, original = store
    before = (data_dir / "storefront.db").read_bytes()
    keys_before = sorted(p.name for p in data_dir.iterdir())
    code, text = _run(monkeypatch, capsys, [part.format(sid=sid) for part in command])
    assert code == 2, text
    assert text.strip() == _expected(data_dir, original)
    assert "Traceback" not in text
    assert (data_dir / "storefront.db").read_bytes() == before  # nothing was changed
    assert sorted(p.name for p in data_dir.iterdir()) == keys_before  # no KEK promoted


def test_audit_verify_needs_no_key_and_still_works(
        store: tuple[Path, str, bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(monkeypatch, capsys, ["audit", "verify"])
    assert code in (0, None) and "audit chain intact" in text, text


def test_the_previous_key_file_of_a_rotation_opens_the_store(
        store: tuple[Path, str, bytes]) -> None:
    data_dir, _, original = store
    settings = Settings(data_dir=data_dir)
    with pytest.raises(KekMismatch):
        require_kek_opens_store(settings)
    previous = KekFiles(settings.resolved_key_file()).previous
    previous.write_bytes(original)
    previous.chmod(0o600)
    require_kek_opens_store(settings)  # current (new) + previous (the store's): accepted


def test_nothing_to_check_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "absent")
    require_kek_opens_store(settings)
    assert not (tmp_path / "absent").exists()


def test_a_legacy_template_under_a_missing_kek_is_counted(
        store: tuple[Path, str, bytes]) -> None:
    """A version-1 blob names its KEK in its header; one under a KEK no key file holds
    is refused too, even when every data key opens."""
    data_dir, sid, original = store
    settings = Settings(data_dir=data_dir)
    settings.resolved_key_file().write_bytes(original)  # the data keys open again
    require_kek_opens_store(settings)
    gone = key_id_for(bytes(range(32))).encode()
    blob = bytes([1, 3, len(gone)]) + gone + bytes(80)
    engine = make_engine(settings.resolved_database_url())
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(PalmTemplate.__table__).values(
                template_id="tpl-legacy", shopper_id=sid, ciphertext=blob,
                created_at=sa.func.current_timestamp()))
    finally:
        engine.dispose()
    with pytest.raises(KekMismatch) as refused:
        require_kek_opens_store(settings)
    assert f"1 legacy template(s) wrapped under KEK {gone.decode()!r}" in refused.value.reason
    assert "data key(s)" not in refused.value.reason


def test_a_defect_in_the_check_keeps_its_traceback(
        store: tuple[Path, str, bytes], started: list[object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_url: str) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr("storefront.kek_check._holdings", broken)
    monkeypatch.setattr("sys.argv", ["storefront", "serve", "--port", str(_free_port())])
    with pytest.raises(RuntimeError, match="a defect"):
        main()
    assert started == []


def test_a_data_key_that_does_not_open_elsewhere_names_the_setting() -> None:
    said = explain(TemplateDecryptionError("the data key of 'shp_1' cannot be unwrapped "
                                           "(KEK 'kek-1')"), Settings())
    assert said is not None and said.startswith("the data key of 'shp_1' cannot be unwrapped")
    assert "check STOREFRONT_KEY_FILE" in said


@pytest.mark.postgres
def test_the_check_reads_postgres_too(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "pg", database_url=postgres_url)
    c = bootstrap(settings, processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        sid = c.shoppers.register(display_name="Bo", payment_token="tok_bo").id
        keyring = StoreKeyring(ReloadingKeyProvider(KekFiles(settings.resolved_key_file()),
                                                    development=True), SqlSubjectKeyStore(c.db))
        keyring.purpose_key(sid, b"test", create=True)  # one data key, wrapped under the KEK
        gone = key_id_for(bytes(range(32))).encode()
        with c.engine.begin() as conn:
            conn.execute(sa.insert(PalmTemplate.__table__).values(
                template_id="tpl-legacy", shopper_id=sid,
                ciphertext=bytes([1, 3, len(gone)]) + gone + bytes(80),
                created_at=sa.func.current_timestamp()))
    finally:
        c.close()
    with pytest.raises(KekMismatch, match=r"1 legacy template\(s\) wrapped under KEK"):
        require_kek_opens_store(settings)
    key_file = settings.resolved_key_file()
    key_file.unlink()
    load_or_create_key_file(key_file, create=True)
    with pytest.raises(KekMismatch, match=r"\(1 data key\(s\) and 1 legacy template\(s\)"):
        require_kek_opens_store(settings)


@pytest.fixture(scope="module")
def store_without_palms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A new store with a manager (TOTP secret sealed) and a gate (device key sealed) but
    no enrolled palm, so no per-person data key: (state folder, original key file)."""
    data_dir = tmp_path_factory.mktemp("kek-nopalm") / "store"
    c = bootstrap(Settings(data_dir=data_dir),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        c.security.staff.add(staff_id="max", role="manager", password="a long password 1")
        c.security.registry.add(store_id=c.settings.store_id, device_id="gate-1", kind="gate")
    finally:
        c.close()
    return data_dir, Settings(data_dir=data_dir).resolved_key_file().read_bytes()


@pytest.fixture
def replaced_without_palms(store_without_palms: tuple[Path, bytes], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> Path:
    source, _ = store_without_palms
    data_dir = tmp_path / "store"
    shutil.copytree(source, data_dir)
    key_file = Settings(data_dir=data_dir).resolved_key_file()
    key_file.unlink()
    load_or_create_key_file(key_file, create=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(data_dir))
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT",
                 "STOREFRONT_PAYMENT_PROCESSOR", "STOREFRONT_PAYMENT_SIM_STATE"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


def test_device_keys_and_sealed_secrets_are_checked_without_any_palm(
        replaced_without_palms: Path) -> None:
    """A store with no data key yet still holds secrets under its KEK: the device key
    names its KEK, the manager's TOTP secret is opened to test the key file."""
    with pytest.raises(KekMismatch) as refused:
        require_kek_opens_store(Settings(data_dir=replaced_without_palms))
    reason = refused.value.reason
    assert "1 device key(s) wrapped under KEK" in reason
    assert "sealed staff one-time-code secrets it cannot open" in reason
    assert "data key(s)" not in reason


@pytest.mark.parametrize("command", [
    ["serve", "--port", "{port}"], ["staff", "add", "zed", "--role", "cashier"],
    ["staff", "reset-totp", "max"], ["devices", "add", "gate-9"],
    ["devices", "rotate-key", "gate-1"], ["keys", "rotate"], ["identity", "retired"],
    ["identity", "rotate-transform"]])
def test_commands_that_seal_new_secrets_refuse_a_replaced_key_on_a_store_without_palms(
        replaced_without_palms: Path, command: list[str], started: list[object],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = replaced_without_palms
    before = (data_dir / "storefront.db").read_bytes()
    files_before = sorted(p.name for p in data_dir.rglob("*"))
    code, text = _run(monkeypatch, capsys,
                      [part.format(port=_free_port()) for part in command])
    assert code == 2 and started == [], text
    assert text.startswith("error: STOREFRONT_KEY_FILE: the key file"), text
    assert "Traceback" not in text and "password" not in text.lower()  # asked nothing
    assert (data_dir / "storefront.db").read_bytes() == before
    assert sorted(p.name for p in data_dir.rglob("*")) == files_before  # no key promoted


def test_the_store_s_own_key_opens_a_store_without_palms(
        store_without_palms: tuple[Path, bytes]) -> None:
    data_dir, _ = store_without_palms
    require_kek_opens_store(Settings(data_dir=data_dir))
