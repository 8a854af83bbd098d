"""``storefront staff list / disable / enable / reset-password / reset-totp / set-role``:
each change is audited (actor ``cli``, no secret), the password is asked for twice only
once the account is known, a TOTP secret is printed once; bad input exits 2 with the
reason and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storefront.bootstrap import bootstrap
from storefront.cli import app

PASSWORD = "correct horse battery\n"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    cli = CliRunner()
    for staff_id, role in (("ada", "admin"), ("cal", "cashier")):
        made = cli.invoke(app, ["staff", "add", staff_id, "--role", role], input=PASSWORD * 2)
        assert made.exit_code == 0, made.output
    return cli


def _audit() -> list[dict[str, object]]:
    container = bootstrap(reconcile_payments=False)
    try:
        return [{"actor": e.actor, "subject": e.subject, **e.details}
                for e in container.audit.entries(limit=100) if e.action == "staff_changed"]
    finally:
        container.close()


def test_changes_are_made_and_audited(runner: CliRunner) -> None:
    def run(*args: str, input: str = "") -> str:  # noqa: A002
        result = runner.invoke(app, ["staff", *args], input=input)
        assert result.exit_code == 0, result.output
        return result.output

    assert "cal: disabled (cashier, disabled; 0 token(s) revoked)" in run("disable", "cal")
    assert "unchanged" in run("disable", "cal")
    assert "cal\tcashier\tdisabled\tno-totp" in run("list")
    assert "enabled" in run("enable", "cal")
    out = run("reset-password", "cal", input="another long password\n" * 2)
    assert "password reset" in out and "another long password" not in out
    out = run("set-role", "cal", "--role", "manager")
    assert "role set to manager" in out and "otpauth://" in out
    secret = out.split("authenticator app):")[1].split()[0]
    out = run("reset-totp", "cal")
    assert "otpauth://" in out and secret not in out
    entries = _audit()
    assert [(e["actor"], e["subject"], e["change"]) for e in entries] == [
        ("cli", "staff:cal", change)
        for change in ("disabled", "enabled", "password_reset", "role", "totp_reset")]
    assert secret not in json.dumps(entries) and "another long" not in json.dumps(entries)


@pytest.mark.parametrize(("args", "reason"), [
    (["disable", "nobody"], "no staff account 'nobody'"),
    (["reset-password", "nobody"], "no staff account 'nobody'"),
    (["reset-totp", "cal"], "without a one-time code"),
    (["set-role", "cal", "--role", "janitor"], "is not one of"),
    (["disable", "ada"], "last enabled admin"),
    (["set-role", "ada", "--role", "cashier"], "last enabled admin"),
])
def test_bad_changes_exit_2_with_the_reason(runner: CliRunner, args: list[str],
                                            reason: str) -> None:
    result = runner.invoke(app, ["staff", *args], input="")
    assert result.exit_code == 2, result.output
    assert reason in " ".join(result.output.split())
    assert "password" not in result.output.lower()  # refused before any prompt
    assert _audit() == []


def test_a_short_new_password_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["staff", "reset-password", "cal"], input="short\nshort\n")
    assert result.exit_code == 2 and "12 to 1024" in result.output
    assert _audit() == []
