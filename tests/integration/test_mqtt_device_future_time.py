"""A device time far in the future at the MQTT gateway, on SQLite and PostgreSQL: a frame
whose ``device_time`` (or signed ``ts``) is more than ``device_max_future_skew_s`` ahead of
the gateway's injected clock is refused ``device_time_in_future`` like other bad frames
(a signed ``refuse`` command, a ``device_audit`` row, acknowledged, nothing stored), so a
wrong or hostile clock cannot order an item after the shopper's exit; a time just inside
the bound, and a late one, are accepted as before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hardware.auth import ReplayGuard, canonical_json, decode_frame, seal, verify
from hardware.commands import RefuseCommand, parse_command
from hardware.messages import (
    GateEventMessage,
    HeartbeatMessage,
    ItemEventMessage,
    Message,
    PlateReadingMessage,
)
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import commands_topic, events_topic
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.devices.gateway import Gateway, GatewayConsumer, Handled
from storefront.devices.journal import GatewayJournal
from storefront.devices.models import DeviceMessage
from storefront.devices.routing import Router
from storefront.devices.service import device_registry
from storefront.settings import Settings

STORE = "s1"
# The gateway's (and the store's) injected clock: it stands in the past, so a check against
# the wall clock would accept every time these tests send.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BOUND = timedelta(seconds=Settings().device_max_future_skew_s)
TICK = timedelta(microseconds=1)


@dataclass
class Rig:
    """A store on a fixed clock, its gateway and the devices' keys."""

    c: Container
    gw: Gateway
    keys: dict[str, bytes]

    def send(self, device: str, message: Message, mid: int = 1,
             ts: datetime | None = None) -> Handled:
        """Sign ``message`` at ``ts`` (default: the clock's now) and hand it to the gateway."""
        topic = events_topic(STORE, device)
        frame = seal(self.keys[device], topic, message.model_dump(mode="json"),
                     ts_ms=int((ts or NOW).timestamp() * 1000))
        return self.gw.handle(Received(topic, frame, mid, 1, False))

    def audit(self) -> dict[str, int]:
        return GatewayJournal(self.c.db, lambda: NOW).audit_counts()

    def inbox(self) -> list[tuple[str, int]]:
        with self.c.db() as db:
            rows = db.execute(sa.select(DeviceMessage.device_id, DeviceMessage.device_seq))
            return sorted((str(d), int(s)) for d, s in rows)


def _gateway(c: Container, skew: timedelta) -> Gateway:
    """The gateway of ``build_gateway``, on the test's fixed clock and bound. The replay
    window is wide, so that the frame times (on the fixed clock, not the wall clock) are
    fresh to the replay guard, which reads the wall clock."""
    journal = GatewayJournal(c.db, lambda: NOW)
    router = Router(ingest=c.ingest, gates=c.gates, journal=journal, clock=lambda: NOW)
    window_ms = int((abs(datetime.now(UTC) - NOW) + timedelta(days=1)).total_seconds() * 1000)
    return Gateway(store_id=STORE, registry=device_registry(c), journal=journal,
                   router=router, guard=ReplayGuard(window_ms), clock=lambda: NOW,
                   max_frame_bytes=MqttSettings().max_frame_bytes, max_future_skew=skew)


def _rig(tmp_path: Path, database: str | None, **settings: Any) -> Rig:
    values = Settings(data_dir=tmp_path, store_id=STORE, database_url=database, **settings)
    c = bootstrap(values, clock=lambda: NOW)
    c.catalogue.upsert(builtin_items())
    registry = device_registry(c)
    keys = {d: registry.add(store_id=STORE, device_id=d, kind=k)
            for d, k in (("cart-1", "cart"), ("gate-1", "gate"), ("plate-1", "plate"))}
    gw = _gateway(c, timedelta(seconds=values.device_max_future_skew_s))
    return Rig(c, gw, keys)


@pytest.fixture
def rig(tmp_path: Path, database: str | None) -> Iterator[Rig]:
    made = _rig(tmp_path, database)
    yield made
    made.c.close()


def _session(c: Container) -> str:
    shopper = c.shoppers.register(display_name="A", payment_token="tok_a")
    return str(c.gates.open_session(shopper_id=shopper.id, entry_method="app"))


def _item(session: str, seq: int, at: datetime) -> ItemEventMessage:
    return ItemEventMessage(device_id="cart-1", device_seq=seq, device_time=at, kind="picked",
                            session_id=session, product_code=builtin_items()[0].code,
                            quantity=1, confidence=0.9)


def _refusal(rig: Rig, handled: Handled, device: str) -> RefuseCommand:
    """The one signed ``refuse`` command of ``handled``, checked against the device key."""
    assert len(handled.replies) == 1
    topic, frame = handled.replies[0]
    assert topic == commands_topic(STORE, device)
    decoded = decode_frame(frame, 1 << 20)
    verify(decoded, rig.keys[device], topic)  # signed with the device's own key
    command = parse_command(canonical_json(decoded.body))
    assert isinstance(command, RefuseCommand)
    return command


def test_an_item_just_inside_the_bound_is_applied_just_beyond_it_refused(rig: Rig) -> None:
    session = _session(rig.c)
    code = builtin_items()[0].code
    assert rig.send("cart-1", _item(session, 1, NOW + BOUND), mid=1).outcome == "applied"
    handled = rig.send("cart-1", _item(session, 2, NOW + BOUND + TICK), mid=2)
    assert (handled.outcome, handled.reason_code) == ("refused", "device_time_in_future")
    assert handled.reason is not None and "device_time is 300.000 s ahead" in handled.reason
    command = _refusal(rig, handled, "cart-1")
    assert (command.in_reply_to, command.reason_code) == (2, "device_time_in_future")
    assert command.issued_at == NOW
    assert rig.audit() == {"device_time_in_future": 1}
    assert rig.c.carts.cart(session).lines == {code: 1}  # the refused pick is not stored
    assert rig.inbox() == []  # item events live in the session log, not the inbox
    assert rig.gw.counts["refused:device_time_in_future"] == 1
    # Nothing of seq 2 was kept: once the clock is fixed, the same seq is applied.
    assert rig.send("cart-1", _item(session, 2, NOW), mid=3).outcome == "applied"
    assert rig.c.carts.cart(session).lines == {code: 2}


def test_a_future_item_cannot_land_after_the_exit(rig: Rig) -> None:
    """The scenario of the bug: an item stamped an hour ahead would sort after an exit
    recorded in between; it is refused instead, and the exit prices an empty cart."""
    session = _session(rig.c)
    handled = rig.send("cart-1", _item(session, 1, NOW + timedelta(hours=1)))
    assert handled.reason_code == "device_time_in_future"
    assert rig.c.carts.cart(session).lines == {}
    assert rig.c.checkout.exit(session).total_minor == 0


def test_late_times_stay_accepted(rig: Rig) -> None:
    session = _session(rig.c)
    late = NOW - timedelta(days=2)
    assert rig.send("cart-1", _item(session, 1, late), mid=1).outcome == "applied"
    beat = HeartbeatMessage(device_id="plate-1", device_seq=1, device_time=late, uptime_s=9)
    assert rig.send("plate-1", beat, mid=2).outcome == "recorded"
    assert rig.audit() == {}


@pytest.mark.parametrize("message", [
    HeartbeatMessage(device_id="gate-1", device_seq=4, device_time=NOW + BOUND + TICK,
                     uptime_s=5),
    GateEventMessage(device_id="gate-1", device_seq=4, device_time=NOW + BOUND + TICK,
                     gate_id="g1", event="passed"),
    PlateReadingMessage(device_id="plate-1", device_seq=4, device_time=NOW + BOUND + TICK,
                        plate_id="P-1", grams=250, stable=True),
], ids=lambda m: m.type)
def test_every_message_type_is_bounded_and_nothing_reaches_the_inbox(
        rig: Rig, message: Message) -> None:
    handled = rig.send(message.device_id, message)
    assert (handled.outcome, handled.reason_code) == ("refused", "device_time_in_future")
    assert _refusal(rig, handled, message.device_id).in_reply_to == 4
    assert rig.audit() == {"device_time_in_future": 1}
    assert rig.inbox() == []
    inside = message.model_copy(update={"device_time": NOW + BOUND})
    assert rig.send(message.device_id, inside, mid=2).outcome == "recorded"
    assert rig.inbox() == [(message.device_id, 4)]


def test_a_frame_signed_in_the_future_is_refused_even_with_a_plausible_device_time(
        rig: Rig) -> None:
    """A frame ``ts`` beyond the bound was accepted "like a late one"; it is refused."""
    beat = HeartbeatMessage(device_id="gate-1", device_seq=1, device_time=NOW, uptime_s=5)
    ahead = timedelta(milliseconds=int(BOUND / timedelta(milliseconds=1)) + 1)
    handled = rig.send("gate-1", beat, mid=1, ts=NOW + ahead)
    assert handled.reason_code == "device_time_in_future"
    assert handled.reason is not None and "frame time (ts) is 300.001 s ahead" in handled.reason
    assert rig.inbox() == [] and rig.gw.counts["late_accepted"] == 0
    assert rig.send("gate-1", beat, mid=2, ts=NOW + BOUND).outcome == "recorded"


def test_the_bound_follows_the_setting(tmp_path: Path) -> None:
    rig = _rig(tmp_path, None, device_max_future_skew_s=30)
    try:
        session = _session(rig.c)
        inside, beyond = NOW + timedelta(seconds=30), NOW + timedelta(seconds=30) + TICK
        assert rig.send("cart-1", _item(session, 1, inside), mid=1).outcome == "applied"
        handled = rig.send("cart-1", _item(session, 2, beyond), mid=2)
        assert handled.reason_code == "device_time_in_future"
        assert handled.reason is not None and "at most 30 s allowed" in handled.reason
    finally:
        rig.c.close()


class _Link:
    """Records what the consumer publishes, dead-letters and acknowledges."""

    def __init__(self, **_: Any) -> None:
        self.published: list[str] = []
        self.acked: list[int] = []
        self.dead: list[str] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append(topic)

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def dead_letter(self, topic: str, original_topic: str, payload: bytes,
                    reason: str) -> None:
        self.dead.append(reason)


def test_the_refused_frame_is_answered_and_acknowledged_not_dead_lettered(rig: Rig) -> None:
    consumer = GatewayConsumer(rig.gw, _Link)  # type: ignore[arg-type]
    topic = events_topic(STORE, "cart-1")
    body = _item(_session(rig.c), 1, NOW + timedelta(days=365)).model_dump(mode="json")
    frame = seal(rig.keys["cart-1"], topic, body, ts_ms=int(NOW.timestamp() * 1000))
    consumer._on_message(Received(topic, frame, 41, 1, False))
    link = consumer.link
    assert link.acked == [41]  # type: ignore[attr-defined]
    assert link.published == [commands_topic(STORE, "cart-1")]  # type: ignore[attr-defined]
    assert link.dead == []  # type: ignore[attr-defined]
    assert rig.audit() == {"device_time_in_future": 1}

