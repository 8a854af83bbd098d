"""The device gateway: subscribe, validate, authenticate, route, answer, then acknowledge.

Per message, in order (the first failure decides):

1. topic: ``stores/{store}/devices/{device}/events`` of this gateway's store, else
   refused ``bad_topic`` / ``wrong_store``;
2. device: registered in this store and not revoked, else ``unknown_device`` /
   ``revoked_device`` (key lookup is by the topic's device, which the broker ACL ties
   to the publisher's credentials);
3. frame: size-limited signed JSON frame, else dead-lettered ``invalid_payload``;
4. HMAC over body, nonce, time and topic with that device's key, else ``bad_signature``;
5. freshness: a palm capture outside the replay window is refused
   ``outside_replay_window`` (it must never open a gate late); other authentic late
   frames (queued at the broker during an outage) are accepted, as their effects are
   idempotent by (device, seq); a nonce seen before is a duplicate (a retransmission or
   a replay): acknowledged, not re-run;
6. schema: a valid versioned message, else dead-lettered ``invalid_payload``;
7. the payload's ``device_id`` equals the topic's device, else ``misdirected``;
7a. the publish was not retained, else ``retained_message`` (answered with a signed
   ``refuse`` command, nothing done): a retained event is kept by the broker and handed
   to every new subscription, so acting on it would re-run a stale capture or item
   event. The gateway subscribes with MQTT 5 *retain as published* (so it sees the flag
   of a live retained publish, which it refuses and audits once) and *retain handling 2*
   (the broker never sends stored retained messages on subscribing, so a gateway
   restart neither re-handles nor re-audits them; :mod:`hardware.mqtt`);
7b. the device's kind may send that message type (:data:`MESSAGE_KINDS`, the same rule as
   the HTTP API's: item events from carts, palm captures and gate events from gates,
   plate readings from plates, heartbeats from any), else ``wrong_device_kind``;
7c. neither the payload's ``device_time`` nor the frame's ``ts`` is more than
   ``max_future_skew`` (``Settings.device_max_future_skew_s``) ahead of the gateway's
   clock, else ``device_time_in_future``: a device with a wrong (or hostile) clock must
   not order its events after later ones, such as the shopper's exit. This refusal is
   also answered with a signed ``refuse`` command, and the device's clock offset is
   still recorded when the frame is inside the replay window (it shows the wrong
   clock). Late (past) times are not bounded here;
8. routing into the service layer (:mod:`storefront.devices.routing`); transient
   database errors are retried with back-off and the message is not acknowledged
   until its effect is committed; commands are published back, signed.

Every refusal is written to ``device_audit`` and counted in :attr:`Gateway.counts`:
the checks above, and the messages refused at routing (item events for a closed or
unknown session or an unknown product, a sequence number reused with other content
(``conflicting_duplicate``), an unusable or exit palm capture), with the reason code
and reason. An entry the gate declines (palm not identified, ambiguous, entry refused)
is a decision, not a refused message: it is recorded in the audit log (the
identification) and the inbox (outcome and the commands sent), not in ``device_audit``;
unexpected errors in handling one message are audited as ``internal_error`` and the
message dead-lettered, so the gateway never crashes on input (a refusal reason is stored
with NUL and other control characters escaped, which PostgreSQL text refuses, and a
refusal that still cannot be written is logged rather than raised). The PUBACK is sent
only after all of that is committed (manual acknowledgement).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from cart.errors import ConcurrencyConflict
from cart.session import MAX_CLOCK_SKEW
from hardware.auth import Frame, ReplayGuard, canonical_json, decode_frame, seal, verify
from hardware.commands import Command
from hardware.errors import (
    AuthenticationFailed,
    InvalidMessage,
    ReplayedMessage,
    StaleMessage,
)
from hardware.messages import Message, parse_message
from hardware.mqtt import MqttLink, Received
from hardware.topics import commands_topic, dead_letter_topic, parse_topic
from storefront.clock import Clock
from storefront.devices.journal import GatewayJournal
from storefront.devices.registry import DeviceRegistry, RegisteredDevice
from storefront.devices.routing import (
    DeviceTimeInFuture,
    Router,
    RouteResult,
    check_not_ahead,
    refusal,
)

log = logging.getLogger(__name__)

Observer = Callable[[Message, RouteResult], None]
TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, ConcurrencyConflict)
MESSAGE_KINDS: dict[str, frozenset[str]] = {
    "item_event": frozenset({"cart"}), "palm_capture": frozenset({"gate"}),
    "gate_event": frozenset({"gate"}), "plate_reading": frozenset({"plate"})}
"""Device kinds that may send each message type (a type not listed: any kind)."""


class Refused(Exception):
    """Internal: a message refused at a gateway check (``dead_letter`` for bad payloads;
    ``answer``: the device and message to send a ``refuse`` command for)."""

    def __init__(self, code: str, reason: str, *, device_id: str | None = None,
                 dead_letter: bool = False,
                 answer: tuple[RegisteredDevice, Message] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.device_id = code, reason, device_id
        self.dead_letter = dead_letter
        self.answer = answer


@dataclass(frozen=True)
class Handled:
    """The gateway's verdict on one delivery: ``outcome`` and the commands to publish."""

    outcome: str
    reason_code: str | None
    replies: list[tuple[str, bytes]]
    reason: str | None = None


class Gateway:
    """Handles deliveries for one store. ``observer`` sees each routed message's result;
    ``max_future_skew`` bounds how far ahead of ``clock`` a device time may be (step 7c;
    default :data:`cart.session.MAX_CLOCK_SKEW`, the default of
    ``Settings.device_max_future_skew_s``). Raises ValueError if it is negative."""

    def __init__(self, *, store_id: str, registry: DeviceRegistry, journal: GatewayJournal,
                 router: Router, guard: ReplayGuard, clock: Clock, max_frame_bytes: int,
                 observer: Observer | None = None,
                 max_future_skew: timedelta = MAX_CLOCK_SKEW) -> None:
        if max_future_skew < timedelta(0):
            raise ValueError("max_future_skew must not be negative")
        self.store_id = store_id
        self._registry = registry
        self._journal = journal
        self._router = router
        self._guard = guard
        self._clock = clock
        self._max_frame = max_frame_bytes
        self._observer = observer
        self._max_ahead = max_future_skew
        self.counts: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._clocks: dict[str, tuple[datetime, int]] = {}

    def handle(self, received: Received) -> Handled:
        """Check and route one delivery; audits refusals. Raises only when stopping."""
        self.counts["received"] += 1
        try:
            message, device = self._admit(received)
        except Refused as exc:
            return self._refused(received, exc)
        except Exception as exc:  # process boundary: never die on one message
            log.exception("unexpected error admitting a message on %r", received.topic)
            return self._refused(received, Refused("internal_error", repr(exc)[:300],
                                                   dead_letter=True))
        if message is None:
            self.counts["duplicate"] += 1
            return Handled("duplicate", None, [])
        result = self._route_with_retry(message, received)
        self.counts[result.outcome] += 1
        if result.reason_code:
            self.counts[f"rejected:{result.reason_code}"] += 1
        if result.audit_reason is not None:
            self._audit(received, Refused(result.reason_code or "rejected",
                                          result.audit_reason, device_id=message.device_id))
        if self._observer is not None:
            self._observer(message, result)
        replies = [self._reply(device, c) for c in result.commands]
        return Handled(result.outcome, result.reason_code, replies)


    def _verified(self, frame: Frame, device: RegisteredDevice, topic: str) -> RegisteredDevice:
        """The device whose key signed ``frame``: the cached one, or, when that key does
        not verify, the one stored now (a key rotated by another process works at once).
        Raises AuthenticationFailed."""
        try:
            verify(frame, device.key, topic)
            return device
        except AuthenticationFailed:
            fresh = self._registry.rotated(device)
            if fresh is None:
                raise
            verify(frame, fresh.key, topic)
            return fresh

    def _admit(self, r: Received) -> tuple[Message | None, RegisteredDevice]:
        """Steps 1-7c of the module docstring; (None, device) for a redelivered duplicate."""
        try:
            parts = parse_topic(r.topic)
        except InvalidMessage as exc:
            raise Refused("bad_topic", exc.reason) from None
        if parts.store != self.store_id or parts.channel != "events":
            raise Refused("wrong_store", f"topic {r.topic!r} is not this store's events")
        device = self._registry.lookup(parts.device)
        if device is None or device.store_id != self.store_id:
            raise Refused("unknown_device", f"device {parts.device!r} is not registered here",
                          device_id=parts.device)
        if device.revoked:
            raise Refused("revoked_device", "device is revoked", device_id=device.id)
        stale: StaleMessage | None = None
        try:
            frame = decode_frame(r.payload, self._max_frame)
            device = self._verified(frame, device, r.topic)
            try:
                offset: int | None = self._guard.check(device.id, frame,
                                                       int(time.time() * 1000))
            except StaleMessage as exc:
                stale, offset = exc, None
            message = parse_message(canonical_json(frame.body))
        except AuthenticationFailed as exc:
            raise Refused(exc.code, exc.reason, device_id=device.id) from None
        except ReplayedMessage:
            # A device's QoS 1 retransmission after a reconnect, or a captured frame
            # replayed: either way it was handled once and is only acknowledged now.
            return None, device
        except InvalidMessage as exc:
            raise Refused("invalid_payload", exc.reason, device_id=device.id,
                          dead_letter=True) from None
        if message.device_id != device.id:
            raise Refused("misdirected", f"payload device {message.device_id!r} sent on the "
                          f"topic of {device.id!r}", device_id=device.id)
        if r.retain:
            raise Refused("retained_message", "device events must not be published with the "
                          "MQTT retain flag", device_id=device.id, answer=(device, message))
        allowed = MESSAGE_KINDS.get(message.type)
        if allowed is not None and device.kind not in allowed:
            raise Refused("wrong_device_kind", f"a {device.kind} device may not send "
                          f"{message.type} (needs {' or '.join(sorted(allowed))})",
                          device_id=device.id)
        if stale is None:
            self._clocks[device.id] = (self._clock(), offset or 0)
        self._check_not_ahead(device, message, frame)
        if stale is not None:
            if message.type == "palm_capture":  # an old capture must never open a gate
                raise Refused(stale.code, stale.reason, device_id=device.id)
            # Authentic but late (queued at the broker while the gateway was down or
            # behind): observations are idempotent by (device, seq), so accept them.
            self.counts["late_accepted"] += 1
        return message, device

    def _check_not_ahead(self, device: RegisteredDevice, message: Message,
                         frame: Frame) -> None:
        """Step 7c: refuse ``device_time_in_future`` (answered with a refuse command)."""
        now = self._clock()
        now_ms = int(now.timestamp() * 1000)
        try:
            check_not_ahead(message.device_time - now, max_ahead=self._max_ahead,
                            what="device_time")
            check_not_ahead(timedelta(milliseconds=frame.ts - now_ms),
                            max_ahead=self._max_ahead, what="frame time (ts)")
        except DeviceTimeInFuture as exc:
            raise Refused(exc.code, exc.reason, device_id=device.id,
                          answer=(device, message)) from None

    def _route_with_retry(self, message: Message, r: Received) -> RouteResult:
        delay = 0.05
        while True:
            try:
                return self._router.route(message)
            except TRANSIENT as exc:
                if self.stopping.is_set():
                    raise
                log.warning("transient error on %s seq %d, retrying in %.2f s: %s",
                            message.device_id, message.device_seq, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # process boundary: a bug must not kill the gateway
                log.exception("routing failed for %s seq %d", message.device_id,
                              message.device_seq)
                refusal = Refused("internal_error", repr(exc)[:300], device_id=message.device_id)
                self._audit(r, refusal)
                return RouteResult("rejected", reason_code="internal_error")

    def _refused(self, r: Received, exc: Refused) -> Handled:
        self.counts["refused"] += 1
        self.counts[f"refused:{exc.code}"] += 1
        self._audit(r, exc)
        replies = []
        if exc.answer is not None:
            device, message = exc.answer
            command = refusal(message, exc.code, exc.reason, self._clock())
            replies.append(self._reply(device, command))
        return Handled("dead_letter" if exc.dead_letter else "refused", exc.code, replies,
                       f"{exc.code}: {exc.reason}")

    def _audit(self, r: Received, exc: Refused) -> None:
        """Write the refusal to ``device_audit``, retrying transient errors; any other
        failure to write it is logged, never raised (one message must not stop the
        gateway)."""
        delay = 0.05
        while True:
            try:
                self._journal.audit(topic=_printable(r.topic), reason_code=exc.code,
                                    reason=_printable(exc.reason),
                                    payload_bytes=len(r.payload), store_id=self.store_id,
                                    device_id=exc.device_id)
                return
            except TRANSIENT:
                if self.stopping.is_set():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # process boundary: log the refusal we could not store
                log.exception("could not audit refusal %s (%s) on %r", exc.code,
                              _printable(exc.reason), r.topic)
                return

    def _reply(self, device: RegisteredDevice, command: Command) -> tuple[str, bytes]:
        topic = commands_topic(self.store_id, device.id)
        body = command.model_dump(mode="json")
        return topic, seal(device.key, topic, body, ts_ms=int(time.time() * 1000))

    def flush_clocks(self) -> None:
        """Store the devices' last-seen times and clock offsets gathered since last time."""
        seen, self._clocks = self._clocks, {}
        try:
            self._registry.record_clocks(seen)
        except TRANSIENT as exc:
            log.warning("could not record device clocks: %s", exc)


class GatewayConsumer:
    """Connects a :class:`Gateway` to MQTT: manual acks after the handling commits."""

    def __init__(self, gateway: Gateway, link_factory: Callable[..., MqttLink]) -> None:
        self.gateway = gateway
        store = gateway.store_id
        self._dead_letter = dead_letter_topic(store)
        self.link = link_factory(subscriptions=(f"stores/{store}/devices/+/events",),
                                 on_message=self._on_message, manual_ack=True)

    def _on_message(self, received: Received) -> None:
        try:
            handled = self.gateway.handle(received)
        except TRANSIENT:
            return  # stopping: leave it unacknowledged; the broker redelivers it
        except Exception as exc:  # never end the MQTT thread on one message
            log.exception("unexpected error handling a message on %r", received.topic)
            handled = Handled("dead_letter", "internal_error", [],
                              f"internal_error: {_printable(repr(exc))[:300]}")
        for topic, frame in handled.replies:
            self.link.publish(topic, frame)
        if handled.outcome == "dead_letter":
            self.link.dead_letter(self._dead_letter, received.topic, received.payload,
                                  handled.reason or "invalid_payload")
        self.link.ack(received.mid, received.qos)


def _printable(text: str) -> str:
    """``text`` with control characters (NUL included) written as ``\\xNN`` escapes."""
    return "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" for c in text)
