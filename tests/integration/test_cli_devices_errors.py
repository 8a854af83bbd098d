"""``storefront devices add / revoke / rotate-key`` report their configuration and
not-found errors through :mod:`storefront.cli_errors`: ``error: <reason>`` on one line
(never wrapped, rich markup in the reason shown as written), exit code 2, no traceback;
``add --password-file`` without mosquitto_passwd refuses before registering anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from storefront.cli import app

STORE = "store-with-a-rather-long-name-so-that-lines-pass-eighty-columns"
LONG_ID = "cart-" + "x" * 59  # 64 characters, the longest id allowed


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("STOREFRONT_DATABASE_URL", "STOREFRONT_KEY_FILE", "STOREFRONT_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_STORE_ID", STORE)
    return CliRunner()


def _one_line_error(result: Result) -> str:
    """The single ``error: ...`` line of a command that ended with exit code 2."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _add(runner: CliRunner, device_id: str, *extra: str) -> Result:
    return runner.invoke(app, ["devices", "add", device_id, *extra])


def test_revoke_of_an_unknown_device_is_one_line(runner: CliRunner) -> None:
    assert _add(runner, "gate-1", "--kind", "gate").exit_code == 0
    line = _one_line_error(runner.invoke(app, ["devices", "revoke", LONG_ID]))
    assert line == f"error: device {LONG_ID!r} is not registered in store {STORE}"
    line = _one_line_error(runner.invoke(app, ["devices", "revoke", "[bold]gate-1"]))
    assert line == f"error: device '[bold]gate-1' is not registered in store {STORE}"


def test_rotate_key_of_an_unknown_or_revoked_device_is_one_line(runner: CliRunner) -> None:
    assert _add(runner, "gate-1", "--kind", "gate").exit_code == 0
    line = _one_line_error(runner.invoke(app, ["devices", "rotate-key", LONG_ID]))
    assert line.startswith(f"error: device {LONG_ID!r} is not registered in store {STORE}")
    line = _one_line_error(runner.invoke(app, ["devices", "rotate-key", "[red]gate-1"]))
    assert line.startswith(f"error: device '[red]gate-1' is not registered in store {STORE}")
    assert runner.invoke(app, ["devices", "revoke", "gate-1"]).exit_code == 0
    line = _one_line_error(runner.invoke(app, ["devices", "rotate-key", "gate-1"]))
    assert "is revoked: add --reinstate" in line
    assert runner.invoke(app, ["devices", "rotate-key", "gate-1", "--reinstate"]).exit_code == 0


def test_add_of_a_registered_or_invalid_id_is_one_line_as_written(runner: CliRunner) -> None:
    assert _add(runner, LONG_ID).exit_code == 0
    line = _one_line_error(_add(runner, LONG_ID))
    assert line == f"error: device {LONG_ID!r} is already registered"
    line = _one_line_error(_add(runner, "[bold]cart"))  # markup is shown, not applied
    assert "'[bold]cart'" in line


def test_add_without_mosquitto_passwd_changes_nothing(
        runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    passwd = tmp_path / "passwd"
    line = _one_line_error(_add(runner, "cart-1", "--password-file", str(passwd)))
    assert line == ("error: mosquitto_passwd is not installed (it comes with mosquitto); "
                    "nothing was changed")
    assert not passwd.exists() and not (tmp_path / "store").exists()
    assert _add(runner, "cart-1").exit_code == 0  # the id was not taken by the refusal
    listed = runner.invoke(app, ["devices", "list", "--json"])
    assert [d["id"] for d in json.loads(listed.output)] == ["cart-1"]
    line = _one_line_error(runner.invoke(app, ["devices", "rotate-key", "cart-1",
                                               "--password-file", str(passwd)]))
    assert line.endswith("mosquitto_passwd is not installed (it comes with mosquitto); "
                         "nothing was changed")


def test_rotate_key_prints_the_key_then_one_line_for_an_unwritable_acl(
        runner: CliRunner, tmp_path: Path) -> None:
    assert _add(runner, "gate-1", "--kind", "gate").exit_code == 0
    acl = tmp_path / "no-such-folder" / "acl"
    result = runner.invoke(app, ["devices", "rotate-key", "gate-1", "--acl-file", str(acl)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[1].startswith("hmac key (base64): ")  # printed before the broker files
    assert lines[2:] == [f"error: the new key above is in force, but the broker files were "
                         f"not updated: No such file or directory: {acl}"]
