"""New message types, commands, settings, topics and the device disk buffer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardware.commands import OpenGateCommand, RefuseCommand, parse_command, shorten
from hardware.errors import InvalidMessage
from hardware.messages import (
    GateEventMessage,
    PlateReadingMessage,
    encode_message,
    parse_message,
)
from hardware.settings import MqttSettings, parse_broker_url
from hardware.simulators.buffer import DiskBuffer
from hardware.topics import dead_letter_topic, device_acl_pattern

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_plate_and_gate_messages_round_trip() -> None:
    plate = PlateReadingMessage(device_id="plate-1", device_seq=0, device_time=T0,
                                plate_id="P-7", grams=1250, stable=True)
    gate = GateEventMessage(device_id="gate-1", device_seq=1, device_time=T0, gate_id="g1",
                            event="passed", session_id="ses_1")
    assert parse_message(encode_message(plate)) == plate
    assert parse_message(encode_message(gate)) == gate


def test_negative_plate_weights_are_refused() -> None:
    raw = (b'{"type":"plate_reading","device_id":"p","device_seq":0,'
           b'"device_time":"2026-03-02T09:00:00Z","plate_id":"P","grams":-1,"stable":true}')
    with pytest.raises(InvalidMessage, match="grams"):
        parse_message(raw)


def test_commands_round_trip_and_are_strict() -> None:
    command = OpenGateCommand(command_id="a" * 32, device_id="gate-1", issued_at=T0,
                              in_reply_to=4, gate_id="g1", session_id="ses_1")
    assert parse_command(command.model_dump_json().encode()) == command
    with pytest.raises(InvalidMessage):
        parse_command(b'{"type":"refuse","command_id":"x"}')
    refuse = RefuseCommand(command_id="b" * 32, device_id="d", issued_at=T0,
                           reason_code="not_identified", reason=shorten("x" * 500))
    assert len(refuse.reason) == 200


@pytest.mark.parametrize("url,expected", [("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883)),
                                          ("mqtt://broker", ("broker", 1883))])
def test_broker_urls(url: str, expected: tuple[str, int]) -> None:
    assert tuple(parse_broker_url(url)) == expected


@pytest.mark.parametrize("url", ["http://x:1883", "mqtt://", "mqtt://x:99999", "mqtt://x/a"])
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_url(url)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_MQTT_URL", "mqtt://10.0.0.1:1884")
    monkeypatch.setenv("STOREFRONT_MQTT_USERNAME", "gw")
    settings = MqttSettings()
    assert settings.broker() == ("10.0.0.1", 1884) and settings.username == "gw"


def test_dead_letter_and_acl_topics() -> None:
    assert dead_letter_topic("s1") == "stores/s1/gateway/dead-letter"
    assert device_acl_pattern("s1", "cart-1") == "stores/s1/devices/cart-1/#"
    with pytest.raises(InvalidMessage):
        device_acl_pattern("s1", "+")


def test_disk_buffer_keeps_order_across_reopen_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "buf" / "cart-1.jsonl"
    buffer = DiskBuffer(path, fsync=False)
    for n in range(5):
        buffer.append("t", {"n": n})
    with path.open("a") as handle:
        handle.write('{"topic": "t", "bo')  # power cut mid-write
    reopened = DiskBuffer(path, fsync=False)
    assert len(reopened) == 5
    assert [body["n"] for _, body in reopened.take_all()] == [0, 1, 2, 3, 4]
    assert len(reopened) == 0 and not path.exists()
