"""A small chaos run through a private Mosquitto: broker restart, gateway SIGKILL, attacks.

The same script as ``benchmarks/chaos_devices.py`` (which runs 100 devices and 50,000
messages), with 10 devices and 2,000 messages to keep CI short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_skips import skip_or_fail

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos_devices.py"


@pytest.mark.mqtt
def test_no_event_lost_or_double_counted_and_every_attack_refused(tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        skip_or_fail("mosquitto is not installed")
    out = tmp_path / "chaos.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--devices", "10", "--messages", "2000",
                           "--json", str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=400, check=False)
    assert out.exists(), done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["messages_sent"] >= 2000
    assert report["lost"] == 0 and report["double_counted"] == 0
    assert report["carts_exact"] == report["carts"] > 0
    assert report["events_applied"] == report["events_expected"]
    assert report["buffered_during_outage"] > 0  # the broker restart really happened
    assert report["hostile_all_refused"] is True
    for reason in ("bad_signature", "unknown_device", "misdirected", "invalid_payload"):
        assert report["audited"][reason] >= report["hostile_sent"][reason]
    assert report["outside_acl_denied_by_broker"] >= report["hostile_sent"]["outside_acl"]
    assert done.returncode == 0
