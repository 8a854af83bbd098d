"""A DeviceClient connects with the MQTT client id its settings name (private Mosquitto).

Before, ``settings.client_id`` was ignored and every client of a device connected as
``device-{store}-{device}``: a second connection for the same device (the chaos
benchmark's forger, the demo's throw-away devices) took the first one's session over,
and each reconnect (after paho's back-off) kicked the other off again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from service_skips import skip_or_fail

from hardware.auth import new_device_key
from hardware.messages import ItemEventMessage
from hardware.settings import MqttSettings
from hardware.simulators.device import DeviceClient
from storefront.devices.mosquitto import MosquittoProcess

STORE = "s1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    if shutil.which("mosquitto") is None:
        skip_or_fail("mosquitto is not installed")
    process = MosquittoProcess(tmp_path / "broker", password_file=None, acl_file=None)
    process.start()
    yield process
    process.stop()


def _client(broker: MosquittoProcess, folder: Path, client_id: str | None) -> DeviceClient:
    return DeviceClient(store=STORE, device_id="cart-1", key=new_device_key(),
                        settings=MqttSettings(url=broker.url, client_id=client_id),
                        buffer_dir=folder, fsync=False)


def _message(seq: int) -> ItemEventMessage:
    return ItemEventMessage(device_id="cart-1", device_seq=seq, device_time=datetime.now(UTC),
                            kind="picked", session_id="ses_1", product_code="X1",
                            quantity=1, confidence=1.0)


@pytest.mark.mqtt
def test_two_clients_of_one_device_with_their_own_ids_do_not_kick_each_other(
        broker: MosquittoProcess, tmp_path: Path) -> None:
    first = _client(broker, tmp_path / "first", "cart-1-real")
    second = _client(broker, tmp_path / "second", "cart-1-forger")
    try:
        assert first.start(10) and second.start(10)
        # A takeover closes the first connection while the broker handles the second
        # CONNECT; the first client's next publish would then need a reconnect.
        for seq, client in enumerate((first, second, first)):
            client.send(_message(seq))
            assert client.wait_flushed(10)
        assert first.link.connects == 1 and second.link.connects == 1
        assert first.link.connected.is_set() and second.link.connected.is_set()
        assert broker.log_count("as cart-1-real ") == 1
        assert broker.log_count("as cart-1-forger ") == 1
        assert broker.log_count("already connected, closing old connection") == 0
    finally:
        first.stop()
        second.stop()


@pytest.mark.mqtt
def test_without_a_client_id_a_device_connects_with_its_stable_id(
        broker: MosquittoProcess, tmp_path: Path) -> None:
    client = _client(broker, tmp_path, None)
    try:
        assert client.start(10)
        client.send(_message(1))
        assert client.wait_flushed(10)
        assert broker.log_count(f"as device-{STORE}-cart-1 ") == 1
    finally:
        client.stop()
