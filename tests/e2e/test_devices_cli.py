"""``storefront devices add/list`` and ``storefront demo --broker`` end to end."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from service_skips import skip_or_fail
from typer.testing import CliRunner

from storefront.cli import app


def test_devices_add_writes_broker_files_and_list_shows_no_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("mosquitto_passwd") is None:
        skip_or_fail("mosquitto_passwd is not installed")
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_STORE_ID", "s9")
    runner = CliRunner()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    added = runner.invoke(app, ["devices", "add", "cart-7", "--kind", "cart",
                                "--password-file", str(passwd), "--acl-file", str(acl)])
    assert added.exit_code == 0, added.output
    assert "hmac key (base64)" in added.output
    assert passwd.read_text().startswith("cart-7:$7$")  # hashed by mosquitto_passwd
    assert "topic write stores/s9/devices/cart-7/events" in acl.read_text()
    again = runner.invoke(app, ["devices", "add", "cart-7"])
    assert again.exit_code == 2 and "already registered" in again.output
    bad = runner.invoke(app, ["devices", "add", "cart/8"])
    assert bad.exit_code == 2
    listed = runner.invoke(app, ["devices", "list"])
    assert listed.exit_code == 0 and "cart-7" in listed.output
    key_line = next(line for line in added.output.splitlines() if "hmac key" in line)
    assert key_line.split()[-1] not in listed.output
    # A lost cart is revoked: listed as such, and the broker ACL no longer names it.
    assert runner.invoke(app, ["devices", "add", "gate-1", "--kind", "gate"]).exit_code == 0
    revoked = runner.invoke(app, ["devices", "revoke", "cart-7", "--acl-file", str(acl)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output, revoked.output
    assert "cart-7" not in acl.read_text() and "devices/gate-1/events" in acl.read_text()
    row = next(line for line in runner.invoke(app, ["devices", "list"]).output.splitlines()
               if "cart-7" in line)
    assert row.rstrip(" │").endswith("yes")
    as_json = runner.invoke(app, ["devices", "list", "--json"])
    assert as_json.exit_code == 0, as_json.output
    listed_json = {d["id"]: d for d in json.loads(as_json.output)}
    assert set(listed_json) == {"cart-7", "gate-1"}
    assert listed_json["cart-7"]["revoked_at"] is not None
    assert listed_json["gate-1"]["revoked_at"] is None
    assert listed_json["gate-1"]["created_at"].endswith("+00:00")
    assert key_line.split()[-1] not in as_json.output
    again = runner.invoke(app, ["devices", "revoke", "cart-7"])
    assert again.exit_code == 0 and "already revoked" in again.output
    unknown = runner.invoke(app, ["devices", "revoke", "ghost"])
    assert unknown.exit_code == 2 and "not registered" in unknown.output


def _shared_broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.mqtt
def test_demo_through_the_broker_gives_the_same_report(tmp_path: Path) -> None:
    if not _shared_broker_up():
        skip_or_fail("the shared Mosquitto is not reachable on 127.0.0.1:1883")
    runner = CliRunner()
    reports = []
    for name, extra in (("direct", []), ("broker", ["--broker", "mqtt://127.0.0.1:1883"])):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["demo", "--shoppers", "5", "--seed", "11",
                                     "--report", str(out), *extra])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    timing = {"duration_s", "broker", "identify_ms_p50", "identify_ms_p99",
              "exit_to_receipt_ms_p50", "exit_to_receipt_ms_p99"}
    direct, broker = ({k: v for k, v in r.items() if k not in timing} for r in reports)
    assert broker == direct
    assert direct["events_ingested"] > 0 and direct["duplicate_events_ignored"] > 0


def test_demo_refuses_a_bad_broker_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--shoppers", "1", "--broker", "http://x"])
    assert result.exit_code == 2 and "mqtt://" in result.output


def test_devices_list_of_an_empty_store_and_of_a_wrong_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "mistyped"))
    missing = runner.invoke(app, ["devices", "list", "--json"])
    assert missing.exit_code == 2 and "no database" in missing.output
    assert not (tmp_path / "mistyped").exists()  # nothing created at a wrong path
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    added = runner.invoke(app, ["devices", "add", "gate-1", "--kind", "gate"])
    assert added.exit_code == 0, added.output
    monkeypatch.setenv("STOREFRONT_STORE_ID", "another-store")
    empty = runner.invoke(app, ["devices", "list", "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == []
