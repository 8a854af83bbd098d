"""A bad ``STOREFRONT_*`` setting ends any command with the variable's name, the reason
and exit code 2, not a traceback; nothing is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from storefront.cli import main


@pytest.mark.parametrize(("variable", "value", "command", "says"), [
    ("STOREFRONT_PAYMENT_DECLINE_RATE", "abc", ["audit", "verify"], "valid number"),
    ("STOREFRONT_ENVIRONMENT", "prod", ["privacy", "sweep"], "'development' or 'production'"),
    ("STOREFRONT_ENVIRONMENT", "prod", ["keys", "rotate"], "'development' or 'production'"),
    ("STOREFRONT_PAYMENT_DECLINE_RATE", "abc", ["db", "upgrade"], "valid number"),
])
def test_a_bad_setting_is_named_with_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        variable: str, value: str, command: list[str], says: str) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr("sys.argv", ["storefront", *command])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr().out
    assert stop.value.code == 2
    assert "configuration is not valid" in out and variable in out and says in out
    assert "Traceback" not in out
    assert not (tmp_path / "state").exists()
