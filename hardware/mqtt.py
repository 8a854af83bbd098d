"""An MQTT 5 connection for devices and the gateway (paho-mqtt >= 2).

QoS 1 everywhere; a persistent session (``clean_start`` false, session expiry set)
so the broker keeps queued messages across disconnects; reconnection with
exponential back-off between ``reconnect_min_s`` and ``reconnect_max_s`` (paho's
network thread); subscriptions renewed on every connect; optional manual
acknowledgement, so a consumer sends PUBACK only after its effect is durably stored;
and :meth:`MqttLink.dead_letter` for payloads that could not be accepted.

Retained messages: subscriptions use the MQTT 5 options *retain handling* 2 (the broker
never sends its stored retained messages when the subscription is made, so a restart
does not hand an old retained event or command over again) and *retain as published*
(a live delivery keeps the publisher's retain flag, :attr:`Received.retain`, so the
receiver can refuse it: the gateway refuses retained device events).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hardware.settings import MqttSettings

log = logging.getLogger(__name__)

QOS = 1
DEAD_LETTER_SAMPLE_BYTES = 1024
"""How much of a dead-lettered payload is kept (base64) next to its SHA-256 and size."""


@dataclass(frozen=True)
class Received:
    """One message as delivered by the broker. ``mid`` is needed to acknowledge it;
    ``retain``: it was published with the retain flag (see the module docstring)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    retain: bool = False


Handler = Callable[[Received], None]
PublishedHandler = Callable[[int, int], None]  # (mid, reason code value)


class MqttLink:
    """One MQTT client connection, started with :meth:`start` and ended with :meth:`stop`.

    ``subscriptions``: topic filters subscribed (QoS 1) on every connect. ``on_message``
    runs on paho's network thread, once per delivered message; with ``manual_ack`` the
    handler (or anyone later) must call :meth:`ack`. ``on_published`` receives each
    PUBACK's message id and reason code (0 accepted, 0x87 not authorized, ...).
    ``on_connected`` runs after every successful (re)connect.
    """

    def __init__(self, settings: MqttSettings, *, client_id: str,
                 subscriptions: tuple[str, ...] = (), on_message: Handler | None = None,
                 manual_ack: bool = False, on_published: PublishedHandler | None = None,
                 on_connected: Callable[[], None] | None = None) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_published = on_published
        self._on_connected = on_connected
        self.connected = threading.Event()
        self.connects = 0
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, manual_ack=manual_ack)
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)  # unbounded: the caller's buffer bounds it
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_publish = self._published
        client.on_subscribe = self._subscribed
        self._client = client

    def start(self) -> None:
        """Connect in the background; paho's thread keeps reconnecting with back-off."""
        host, port = self._settings.broker()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._settings.session_expiry_s
        props.ReceiveMaximum = self._settings.max_inflight
        self._client.connect_async(host, port, keepalive=self._settings.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the session) and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or ``timeout_s`` passes; returns whether connected."""
        return self.connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish ``payload`` on ``topic`` at QoS 1; paho keeps it until acknowledged.

        While disconnected the message waits in paho's memory and goes out on reconnect;
        callers that must survive a process restart buffer on disk instead (see
        :class:`hardware.simulators.buffer.DiskBuffer`).
        """
        return self._client.publish(topic, payload, qos=QOS)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual-ack mode): the broker may drop it now."""
        self._client.ack(mid, qos)

    def dead_letter(self, topic: str, original_topic: str, payload: bytes, reason: str) -> None:
        """Publish a dead letter: the original topic, the reason, size, SHA-256 and a sample."""
        letter = {
            "original_topic": original_topic[:256],
            "reason": reason[:500],
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "sample_b64": base64.b64encode(payload[:DEAD_LETTER_SAMPLE_BYTES]).decode("ascii"),
            "at": datetime.now(UTC).isoformat(),
        }
        self.publish(topic, json.dumps(letter, sort_keys=True).encode("utf-8"))

    def _connected(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                   reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connect refused: %s", reason)
            return
        self.connects += 1
        if not self._subscriptions:
            self._ready()
            return
        # Ready only once the broker confirms the subscriptions (SUBACK): a message
        # published before that would find no subscriber and be dropped.
        options = SubscribeOptions(qos=QOS, retainAsPublished=True,
                                   retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        client.subscribe([(topic, options) for topic in self._subscriptions])

    def _subscribed(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any,
                    _props: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.warning("MQTT subscription refused: %s", failed)
            return
        self._ready()

    def _ready(self) -> None:
        self.connected.set()
        if self._on_connected is not None:
            self._on_connected()

    def _disconnected(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                      reason: Any, _props: Any) -> None:
        self.connected.clear()
        log.info("MQTT disconnected: %s", reason)

    def _message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers refuse these, but never trust the wire
            topic = bytes(msg._topic).decode("utf-8", "replace")
        self._on_message(Received(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.dup),
                                  bool(msg.retain)))

    def _published(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any,
                   _props: Any) -> None:
        if self._on_published is not None:
            self._on_published(mid, int(reason.value))
