"""``storefront devices rotate-key``: one device's new key, the old one refused.

Before there was no way to replace one device's key: ``devices revoke`` then ``devices
add`` with the same id exits 2 (already registered).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from service_skips import skip_or_fail
from typer.testing import CliRunner

from hardware.auth import seal
from hardware.messages import HeartbeatMessage
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import events_topic
from storefront.bootstrap import bootstrap
from storefront.cli import app
from storefront.devices.service import build_gateway

STORE = "s9"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_STORE_ID", STORE)


def _key(output: str) -> bytes:
    line = next(line for line in output.splitlines() if line.startswith("hmac key"))
    return base64.b64decode(line.split()[-1])


def _heartbeat_outcomes(keys: list[bytes]) -> list[str | None]:
    """What a fresh gateway (no cached device) makes of a heartbeat signed with each key."""
    container = bootstrap()
    try:
        gateway = build_gateway(container, MqttSettings())
        topic = events_topic(STORE, "gate-1")
        outcomes = []
        for seq, key in enumerate(keys):
            body = HeartbeatMessage(device_id="gate-1", device_seq=seq,
                                    device_time=datetime.now(UTC), uptime_s=1)
            frame = seal(key, topic, body.model_dump(mode="json"),
                         ts_ms=int(time.time() * 1000))
            handled = gateway.handle(Received(topic, frame, seq, 1, False))
            outcomes.append(handled.reason_code or handled.outcome)
        return outcomes
    finally:
        container.close()


def test_rotate_key_replaces_the_key_and_the_old_one_is_refused() -> None:
    added = runner.invoke(app, ["devices", "add", "gate-1", "--kind", "gate"])
    assert added.exit_code == 0, added.output
    old = _key(added.output)
    rotated = runner.invoke(app, ["devices", "rotate-key", "gate-1"])
    assert rotated.exit_code == 0, rotated.output
    new = _key(rotated.output)
    assert new != old and len(new) == 32
    assert "refused within 30 s" in rotated.output
    assert _heartbeat_outcomes([old, new]) == ["bad_signature", "recorded"]
    assert base64.b64encode(new).decode() not in runner.invoke(
        app, ["devices", "list", "--json"]).output


def test_a_revoked_device_needs_reinstate_and_an_unknown_one_is_refused(
        tmp_path: Path) -> None:
    old = _key(runner.invoke(app, ["devices", "add", "gate-1", "--kind", "gate"]).output)
    assert runner.invoke(app, ["devices", "revoke", "gate-1"]).exit_code == 0
    refused = runner.invoke(app, ["devices", "rotate-key", "gate-1"])
    assert refused.exit_code == 2 and "--reinstate" in refused.output
    assert "hmac key" not in refused.output
    assert _heartbeat_outcomes([old]) == ["revoked_device"]
    acl = tmp_path / "acl"
    args = ["devices", "rotate-key", "gate-1", "--reinstate", "--acl-file", str(acl)]
    reinstated = runner.invoke(app, args)
    assert reinstated.exit_code == 0, reinstated.output
    new = _key(reinstated.output)
    assert _heartbeat_outcomes([old, new]) == ["bad_signature", "recorded"]
    listed = json.loads(runner.invoke(app, ["devices", "list", "--json"]).output)
    assert listed[0]["id"] == "gate-1" and listed[0]["revoked_at"] is None
    assert "devices/gate-1/events" in acl.read_text()
    unknown = runner.invoke(app, ["devices", "rotate-key", "ghost"])
    assert unknown.exit_code == 2 and "not registered" in unknown.output


def test_rotate_key_can_give_a_new_broker_password(tmp_path: Path) -> None:
    if shutil.which("mosquitto_passwd") is None:
        skip_or_fail("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    assert runner.invoke(app, ["devices", "add", "cart-1", "--password-file",
                               str(passwd)]).exit_code == 0
    before = passwd.read_text()
    rotated = runner.invoke(app, ["devices", "rotate-key", "cart-1", "--password-file",
                                  str(passwd)])
    assert rotated.exit_code == 0, rotated.output
    assert "broker user: cart-1  password: " in rotated.output
    after = passwd.read_text()
    assert after.startswith("cart-1:$7$") and after != before


def test_a_key_rotated_by_another_process_works_at_once_where_the_old_one_is_cached(
        ) -> None:
    """The gateway and the HTTP verifier cached the old key; the rotation happens in
    another process (the CLI). The new key is accepted at its first use (the stored key is
    read again once a signature fails), and from then on the old one is refused."""
    from storefront.security.devices_http import sign_headers

    added = runner.invoke(app, ["devices", "add", "gate-1", "--kind", "gate"])
    old = _key(added.output)
    container = bootstrap(reconcile_payments=False)
    try:
        gateway = build_gateway(container, MqttSettings())
        topic = events_topic(STORE, "gate-1")

        def beat(key: bytes, seq: int) -> str | None:
            body = HeartbeatMessage(device_id="gate-1", device_seq=seq,
                                    device_time=datetime.now(UTC), uptime_s=1)
            frame = seal(key, topic, body.model_dump(mode="json"),
                         ts_ms=int(time.time() * 1000))
            handled = gateway.handle(Received(topic, frame, seq, 1, False))
            return handled.reason_code or handled.outcome

        def http(key: bytes) -> str:
            headers = sign_headers(key, device_id="gate-1", method="GET", path="/x",
                                   query="", body=b"", ts_ms=int(time.time() * 1000))
            try:
                return container.security.devices.verify(method="GET", path="/x", query="",
                                                         body=b"", headers=headers).id
            except Exception as exc:  # noqa: BLE001 - the refusal is the answer here
                return type(exc).__name__

        assert beat(old, 1) == "recorded" and http(old) == "gate-1"  # both cached it
        new = _key(runner.invoke(app, ["devices", "rotate-key", "gate-1"]).output)
        time.sleep(1.05)  # a cached entry is read again at most once a second
        assert beat(new, 2) == "recorded" and http(new) == "gate-1"
        assert beat(old, 3) == "bad_signature" and http(old) == "AuthenticationRequired"
    finally:
        container.close()
