"""``storefront privacy export`` and ``privacy delete``: data-subject requests for a
shopper without a login, from the command line (audited, actor ``cli``); malformed
options, an existing output file, an unknown shopper and an open trip end with exit 2
and change nothing; a declined confirmation exits 1."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner, Result

from storefront.bootstrap import bootstrap
from storefront.cli import app
from storefront.db.models import Shopper
from storefront.privacy.wiring import build_privacy
from storefront.settings import Settings


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A store folder with a walk-in shopper (no login) who is in the store now; returns
    (folder, shopper id, open trip id)."""
    container = bootstrap(Settings(data_dir=tmp_path / "store"))
    sid = container.shoppers.register(display_name="Walk In", payment_token="tok_w").id
    trip = container.gates.open_session(shopper_id=sid, entry_method="app")
    container.close()
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    return tmp_path / "store", sid, trip


def run(*args: str, answer: str | None = None) -> Result:
    return CliRunner().invoke(app, ["privacy", *args], input=answer)


def _audit(folder: Path, sid: str) -> list[tuple[str, str]]:
    container = bootstrap(Settings(data_dir=folder))
    try:
        return [(e.action, e.actor) for e in container.audit.entries(subject=f"shopper:{sid}")]
    finally:
        container.close()


def test_export_writes_a_private_zip(shop: tuple[Path, str, str], tmp_path: Path) -> None:
    folder, sid, _ = shop
    out = tmp_path / "request-17.zip"
    r = run("export", "--shopper", sid, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"shopper_id": sid, "out": str(out),
                                    "bytes": out.stat().st_size}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = json.loads(zipfile.ZipFile(out).read("data.json"))
    assert data["shopper_id"] == sid and len(data["tables"]["shopping_sessions"]) == 1
    assert _audit(folder, sid) == [("export", "cli")]


@pytest.mark.parametrize("args", [
    ["--shopper", "a b", "--out", "{tmp}/x.zip"],
    ["--shopper", "x" * 65, "--out", "{tmp}/x.zip"],
    ["--shopper", "", "--out", "{tmp}/x.zip"],
    ["--shopper", "{sid}"],
    ["--out", "{tmp}/x.zip"],
    ["--shopper", "{sid}", "--out", "{tmp}/missing/x.zip"],
    ["--shopper", "{sid}", "--out", "{tmp}/taken.zip"],
    ["--shopper", "{sid}", "--out", "{tmp}"],
    ["--shopper", "shp_nobody", "--out", "{tmp}/x.zip"],
])
def test_export_refuses_bad_options(shop: tuple[Path, str, str], tmp_path: Path,
                                    args: list[str]) -> None:
    folder, sid, _ = shop
    (tmp_path / "taken.zip").write_bytes(b"keep me")
    r = run("export", *[a.format(tmp=tmp_path, sid=sid) for a in args])
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "x.zip").exists() and (tmp_path / "taken.zip").read_bytes() == \
        b"keep me"
    if "shp_nobody" in args:
        assert "does not exist" in r.output
    assert _audit(folder, sid) == []


def test_delete_asks_refuses_an_open_trip_then_erases(shop: tuple[Path, str, str]) -> None:
    folder, sid, trip = shop
    r = run("delete", "--shopper", sid, answer="n\n")
    assert r.exit_code == 1 and "Erase shopper" in r.output
    r = run("delete", "--shopper", sid, "--yes")
    assert r.exit_code == 2 and "not settled" in r.output
    container = bootstrap(Settings(data_dir=folder))
    try:
        container.checkout.exit(trip)  # an empty cart settles at zero
    finally:
        container.close()
    r = run("delete", "--shopper", sid, answer="y\n")
    assert r.exit_code == 0, r.output
    done = json.loads(r.output.splitlines()[-1])
    assert done["what"] == "account" and done["deleted"]["shoppers"] == 1
    assert done["kept_anonymised"]["trips"] == 1
    container = bootstrap(Settings(data_dir=folder))
    try:
        with container.db() as db:
            assert db.get(Shopper, sid) is None
    finally:
        container.close()
    assert ("delete", "cli") in _audit(folder, sid)
    r = run("delete", "--shopper", sid, "--yes")
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.parametrize("args", [["--shopper", "bad id", "--yes"], ["--yes"],
                                  ["--shopper", "x" * 65]])
def test_delete_refuses_bad_options(shop: tuple[Path, str, str], args: list[str]) -> None:
    folder, sid, _ = shop
    r = run("delete", *args)
    assert r.exit_code == 2, r.output
    assert _audit(folder, sid) == []


def test_a_shopper_with_a_login_needs_has_login_ok(shop: tuple[Path, str, str],
                                                   tmp_path: Path) -> None:
    """A portal user is refused (exit 2, nothing written or audited) unless the operator
    passes --has-login-ok, which the audit entry records."""
    folder, _, _ = shop
    container = bootstrap(Settings(data_dir=folder))
    try:
        sid = build_privacy(container, hasher=PasswordHasher(
            time_cost=1, memory_cost=1024, parallelism=1)).accounts.sign_up(
            email="portal@example.org", password="correct horse battery",
            display_name="Portal", payment_token="tok_p", client_ip="10.0.0.1")
    finally:
        container.close()
    out = tmp_path / "portal.zip"
    for args in (["export", "--shopper", sid, "--out", str(out)],
                 ["delete", "--shopper", sid, "--yes"]):
        r = run(*args)
        assert r.exit_code == 2 and "has a login account" in r.output, r.output
    assert not out.exists() and _audit(folder, sid) == []
    r = run("export", "--shopper", sid, "--out", str(out), "--has-login-ok")
    assert r.exit_code == 0, r.output
    tables = json.loads(zipfile.ZipFile(out).read("data.json"))["tables"]
    assert tables["shopper_accounts"][0]["email"] == "portal@example.org"
    r = run("delete", "--shopper", sid, "--yes", "--has-login-ok")
    assert r.exit_code == 0, r.output
    container = bootstrap(Settings(data_dir=folder))
    try:
        entries = container.audit.entries(subject=f"shopper:{sid}")
        noted = {e.action: e.details for e in entries if e.actor == "cli"}
        assert noted["export"]["override"] == "--has-login-ok"
        assert noted["delete"]["has_login"] is True and noted["delete"]["what"] == "account"
        with container.db() as db:
            assert db.get(Shopper, sid) is None
    finally:
        container.close()
