"""The device side of the MQTT link: sign, publish at QoS 1, buffer on disk while offline.

A :class:`DeviceClient` is what a gate, smart cart or shelf plate runs: it signs each
message with its key (:mod:`hardware.auth`) at send time on its own, possibly skewed,
clock; publishes on its events topic; keeps messages in a :class:`DiskBuffer` while
the broker is unreachable and replays them in order on reconnect (new messages
queue behind them); and verifies the commands its gateway sends back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hardware.auth import canonical_json, decode_frame, seal, verify
from hardware.commands import Command, parse_command
from hardware.errors import HardwareError
from hardware.messages import Message
from hardware.mqtt import MqttLink, Received
from hardware.settings import MqttSettings
from hardware.simulators.buffer import DiskBuffer
from hardware.topics import commands_topic, events_topic

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], None]


class DeviceClient:
    """One device's connection. ``clock_skew`` shifts its clock (and so its frame times).

    ``settings`` carries the broker URL, this device's broker username/password and its
    MQTT client id: ``settings.client_id`` when set, else ``device-{store}-{device_id}``
    (stable, so the broker keeps the device's session across restarts). Two clients
    with the same id take each other's session over, so a second connection for the
    same device (a test's forger, a throw-away demo device) sets its own id.
    ``key`` is the device's 32-byte HMAC key. Counters: ``sent`` (handed to MQTT),
    ``buffered`` (went through the disk buffer), ``acked`` and ``denied`` (PUBACK reason
    code >= 0x80, e.g. 0x87 not authorized by the broker's ACL), ``commands``.
    """

    def __init__(self, *, store: str, device_id: str, key: bytes, settings: MqttSettings,
                 buffer_dir: Path, clock_skew: timedelta = timedelta(0),
                 on_command: CommandHandler | None = None, fsync: bool = True) -> None:
        self.store = store
        self.device_id = device_id
        self._key = key
        self._skew_ms = int(clock_skew / timedelta(milliseconds=1))
        self._on_command = on_command
        self._buffer = DiskBuffer(buffer_dir / f"{device_id}.jsonl", fsync=fsync)
        # _lock orders sends; _counts guards counters and is never held while calling
        # paho (paho runs on_publish under its own mutex, which publish() also takes).
        self._lock = threading.RLock()
        self._counts = threading.Lock()
        self._draining = False
        self.sent = self.buffered = self.acked = self.denied = self.commands = 0
        self._link = MqttLink(settings,
                              client_id=settings.client_id or f"device-{store}-{device_id}",
                              subscriptions=(commands_topic(store, device_id),),
                              on_message=self._command, on_published=self._published,
                              on_connected=self._replay_async)

    @property
    def link(self) -> MqttLink:
        """The underlying MQTT connection."""
        return self._link

    def now_ms(self) -> int:
        """This device's clock (true time plus its skew), milliseconds since the epoch."""
        return int(time.time() * 1000) + self._skew_ms

    def start(self, wait_s: float = 10.0) -> bool:
        """Connect (in the background); returns whether connected within ``wait_s``."""
        self._link.start()
        return self._link.wait_connected(wait_s)

    def stop(self) -> None:
        """Disconnect; buffered messages stay on disk for the next start."""
        self._link.stop()

    def send(self, message: Message, *, topic: str | None = None) -> None:
        """Send ``message`` on this device's events topic (or ``topic``, for fault tests).

        Published now when connected and nothing is buffered; otherwise appended
        to the disk buffer, to go out in order after reconnecting.
        """
        self.send_body(message.model_dump(mode="json"), topic=topic)

    def send_body(self, body: dict[str, Any], *, topic: str | None = None) -> None:
        """Send an already encoded message object (see :meth:`send`)."""
        target = topic or events_topic(self.store, self.device_id)
        with self._lock:
            if self._draining or len(self._buffer) or not self._link.connected.is_set():
                self._buffer.append(target, body)
                self.buffered += 1
                return
            self._publish(target, body)

    def pending(self) -> int:
        """Messages buffered on disk or published and not yet acknowledged by the broker."""
        with self._counts:
            return len(self._buffer) + self.sent - self.acked - self.denied

    def wait_flushed(self, timeout_s: float) -> bool:
        """Wait until every message is acknowledged by the broker; returns whether it was."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            if len(self._buffer) and self._link.connected.is_set() and not self._draining:
                self._replay_async()
            time.sleep(0.05)
        return self.pending() == 0

    def _publish(self, topic: str, body: dict[str, Any]) -> None:
        frame = seal(self._key, topic, body, ts_ms=self.now_ms())
        with self._counts:
            self.sent += 1
        self._link.publish(topic, frame)

    def _replay_async(self) -> None:
        with self._lock:
            if self._draining or not len(self._buffer):
                return
            self._draining = True
        threading.Thread(target=self._replay, name=f"replay-{self.device_id}",
                         daemon=True).start()

    def _replay(self) -> None:
        """Publish the buffer in order; new sends wait in the buffer until it is empty."""
        try:
            while self._link.connected.is_set():
                with self._lock:
                    entries = self._buffer.take_all()
                    if not entries:
                        return
                    for topic, body in entries:
                        self._publish(topic, body)
        finally:
            with self._lock:
                self._draining = False

    def _published(self, mid: int, reason: int) -> None:
        with self._counts:
            if reason >= 0x80:
                self.denied += 1
            else:
                self.acked += 1

    def _command(self, received: Received) -> None:
        if received.retain:  # a stored copy, never a fresh command from the gateway
            log.warning("device %s ignored a retained command", self.device_id)
            return
        try:
            frame = decode_frame(received.payload, max_bytes=64 * 1024)
            verify(frame, self._key, received.topic)
            command = parse_command(canonical_json(frame.body))
        except HardwareError as exc:
            log.warning("device %s ignored a command: %s", self.device_id, exc.reason)
            return
        self.commands += 1
        if self._on_command is not None:
            self._on_command(command)
