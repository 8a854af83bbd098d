"""Retained device events through a private Mosquitto.

Before, the gateway ignored MQTT's retain flag: a capture published retained opened the
gate, and the broker handed its stored copy to every new subscription, so each gateway
restart handled it again and re-sent the stored ``open_gate``. Now the live retained
publish is refused ``retained_message`` (audited once, answered with ``refuse``) and a
restart is not handed the stored copy at all (subscription option retain handling 2).
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from service_skips import skip_or_fail

from hardware.auth import decode_frame, seal
from hardware.messages import HeartbeatMessage, PalmCaptureMessage
from hardware.settings import MqttSettings
from hardware.topics import commands_topic, events_topic
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.devices.gateway import GatewayConsumer
from storefront.devices.journal import GatewayJournal
from storefront.devices.mosquitto import MosquittoProcess
from storefront.devices.service import device_registry, start_consumer
from storefront.settings import Settings

STORE = "s1"
PALMS = SyntheticPalms(4242)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    if shutil.which("mosquitto") is None:
        skip_or_fail("mosquitto is not installed")
    process = MosquittoProcess(tmp_path / "broker", password_file=None, acl_file=None)
    process.start()
    yield process
    process.stop()


class Watcher:
    """A plain MQTT client: publishes as the device and collects the gate's commands."""

    def __init__(self, broker: MosquittoProcess) -> None:
        self.commands: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"watcher-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(commands_topic(STORE, "gate-1"), qos=1)
        time.sleep(0.3)

    def _message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.commands.append(decode_frame(bytes(msg.payload), 1 << 20).body)

    def publish(self, payload: bytes, *, retain: bool) -> None:
        self.client.publish(events_topic(STORE, "gate-1"), payload, qos=1,
                            retain=retain).wait_for_publish(5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _consumer(c: Container, broker: MosquittoProcess, client_id: str) -> GatewayConsumer:
    consumer = start_consumer(c, MqttSettings(url=broker.url, client_id=client_id))
    assert consumer.link.wait_connected(10)
    return consumer


@pytest.mark.mqtt
def test_a_retained_capture_is_refused_once_and_not_handed_over_on_restart(
        broker: MosquittoProcess, tmp_path: Path) -> None:
    c = bootstrap(Settings(data_dir=tmp_path / "store", store_id=STORE, database_url=None))
    watcher = Watcher(broker)
    consumer: GatewayConsumer | None = None
    try:
        key = device_registry(c).add(store_id=STORE, device_id="gate-1", kind="gate")
        shopper = c.shoppers.register(display_name="P", payment_token="tok_p")
        c.shoppers.enrol_palm(shopper_id=shopper.id,
                              images=[encode_png(PALMS.capture(0, k)) for k in range(5)],
                              consent_text_version="2026-11")
        journal = GatewayJournal(c.db, lambda: datetime.now(UTC))
        topic = events_topic(STORE, "gate-1")

        def sealed(body: dict[str, object]) -> bytes:
            return seal(key, topic, body, ts_ms=int(time.time() * 1000))

        consumer = _consumer(c, broker, "gw-retain")
        capture = PalmCaptureMessage(device_id="gate-1", device_seq=1,
                                     device_time=datetime.now(UTC), gate_id="g1",
                                     direction="entry", image=encode_png(PALMS.capture(0, 5)))
        watcher.publish(sealed(capture.model_dump(mode="json")), retain=True)
        assert _wait(lambda: journal.audit_counts() == {"retained_message": 1})
        assert _wait(lambda: len(watcher.commands) == 1)
        assert watcher.commands[0]["reason_code"] == "retained_message"
        for client_id in ("gw-retain", "gw-retain-fresh"):  # same session, then a new one
            consumer.link.stop()
            consumer = _consumer(c, broker, client_id)
            beat = HeartbeatMessage(device_id="gate-1", device_seq=10 + len(client_id),
                                    device_time=datetime.now(UTC), uptime_s=1)
            watcher.publish(sealed(beat.model_dump(mode="json")), retain=False)
            gateway = consumer.gateway
            assert _wait(lambda: gateway.counts["recorded"] == 1)  # noqa: B023
            assert gateway.counts["received"] == 1  # the heartbeat only, no stored copy
        time.sleep(0.5)
        assert journal.audit_counts() == {"retained_message": 1}
        assert [cmd["type"] for cmd in watcher.commands] == ["refuse"]
        assert c.read_model.with_status("open") == []
    finally:
        if consumer is not None:
            consumer.link.stop()
        watcher.stop()
        c.close()
