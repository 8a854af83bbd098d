"""The MQTT link reports the retain flag, and subscribes so that stored retained messages
are never handed over (before, ``Received`` had no retain flag and the broker's default
sent every stored retained message again on each subscription)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from hardware.auth import new_device_key, seal
from hardware.commands import ShowMessageCommand
from hardware.mqtt import MqttLink, Received
from hardware.settings import MqttSettings
from hardware.simulators.device import DeviceClient
from hardware.topics import commands_topic


def _delivered(retain: bool) -> Received:
    got: list[Received] = []
    link = MqttLink(MqttSettings(), client_id="t", on_message=got.append)
    msg = mqtt.MQTTMessage(mid=3, topic=b"stores/s1/devices/gate-1/events")
    msg.payload, msg.qos, msg.retain = b"{}", 1, retain
    link._message(link._client, None, msg)
    return got[0]


def test_the_retain_flag_reaches_the_handler() -> None:
    assert _delivered(True).retain is True
    assert _delivered(False).retain is False


def test_subscriptions_never_ask_for_stored_retained_messages() -> None:
    link = MqttLink(MqttSettings(), client_id="t", subscriptions=("a/#", "b/+"))
    asked: list[Any] = []
    client = type("C", (), {"subscribe": lambda self, topics: asked.extend(topics)})()
    link._connected(client, None, None, mqtt.ReasonCode(mqtt.PacketTypes.CONNACK, "Success"),
                    None)
    assert [t for t, _ in asked] == ["a/#", "b/+"]
    for _, options in asked:
        assert options.retainHandling == SubscribeOptions.RETAIN_DO_NOT_SEND
        assert options.retainAsPublished and options.QoS == 1


def test_a_simulated_device_ignores_a_retained_command(tmp_path: Path) -> None:
    key = new_device_key()
    seen: list[object] = []
    device = DeviceClient(store="s1", device_id="gate-1", key=key, settings=MqttSettings(),
                          buffer_dir=tmp_path, on_command=seen.append, fsync=False)
    topic = commands_topic("s1", "gate-1")
    command = ShowMessageCommand(command_id="a" * 32, device_id="gate-1",
                                 issued_at=datetime.now(UTC), text="hi")
    frame = seal(key, topic, command.model_dump(mode="json"), ts_ms=int(time.time() * 1000))
    device._command(Received(topic, frame, 1, 1, False, retain=True))
    assert seen == [] and device.commands == 0
    device._command(Received(topic, frame, 2, 1, False))
    assert len(seen) == 1 and device.commands == 1
