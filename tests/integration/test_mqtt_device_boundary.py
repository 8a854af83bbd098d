"""Hostile or buggy devices at the MQTT gateway, on SQLite and PostgreSQL: a device may
only send its kind's messages (as over HTTP); a refusal whose reason holds a NUL byte
(which PostgreSQL text refuses) is still audited and never stops the gateway; a palm
entry names the gate device that sent it; an unexpected error in handling one message is
dead-lettered and acknowledged instead of ending the MQTT thread."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hardware.auth import seal
from hardware.messages import HeartbeatMessage, ItemEventMessage, PalmCaptureMessage
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import events_topic
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.devices.gateway import Gateway, GatewayConsumer
from storefront.devices.journal import GatewayJournal
from storefront.devices.service import build_gateway, device_registry
from storefront.settings import Settings

STORE = "s1"
PALMS = SyntheticPalms(4242)


@pytest.fixture
def store(tmp_path: Path, database: str | None
          ) -> Iterator[tuple[Container, Gateway, dict[str, bytes]]]:
    c = bootstrap(Settings(data_dir=tmp_path, store_id=STORE, database_url=database))
    c.catalogue.upsert(builtin_items())
    registry = device_registry(c)
    keys = {d: registry.add(store_id=STORE, device_id=d, kind=k)
            for d, k in (("cart-1", "cart"), ("gate-1", "gate"), ("plate-1", "plate"))}
    yield c, build_gateway(c, MqttSettings()), keys
    c.close()


def _send(gw: Gateway, keys: dict[str, bytes], device: str, body: dict[str, Any],
          mid: int = 1) -> str:
    topic = events_topic(STORE, device)
    frame = seal(keys[device], topic, body, ts_ms=int(time.time() * 1000))
    return gw.handle(Received(topic, frame, mid, 1, False)).outcome


def _audit(c: Container) -> dict[str, int]:
    return GatewayJournal(c.db, lambda: datetime.now(UTC)).audit_counts()


def test_a_device_may_only_send_its_kinds_messages(store: Any) -> None:
    c, gw, keys = store
    shopper = c.shoppers.register(display_name="A", payment_token="tok_a")
    session = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    code = builtin_items()[0].code
    for n, device in enumerate(("gate-1", "plate-1")):
        item = ItemEventMessage(device_id=device, device_seq=n, device_time=datetime.now(UTC),
                                kind="picked", session_id=session, product_code=code,
                                quantity=1, confidence=0.9).model_dump(mode="json")
        assert _send(gw, keys, device, item, mid=n) == "refused"
    capture = PalmCaptureMessage(device_id="cart-1", device_seq=0, device_time=datetime.now(UTC),
                                 gate_id="g1", direction="entry",
                                 image=encode_png(PALMS.capture(0, 1))).model_dump(mode="json")
    assert _send(gw, keys, "cart-1", capture, mid=5) == "refused"
    assert _audit(c) == {"wrong_device_kind": 3}
    assert c.carts.cart(session).lines == {}
    assert c.read_model.with_status("open") == [c.read_model.get(session)]
    beat = HeartbeatMessage(device_id="plate-1", device_seq=9, device_time=datetime.now(UTC),
                            uptime_s=5).model_dump(mode="json")
    assert _send(gw, keys, "plate-1", beat, mid=6) == "recorded"  # any kind may


def test_a_nul_byte_in_a_refusal_reason_is_audited_and_the_gateway_goes_on(
        store: Any) -> None:
    c, gw, keys = store
    beat = HeartbeatMessage(device_id="cart-1", device_seq=1, device_time=datetime.now(UTC),
                            uptime_s=5).model_dump(mode="json")
    assert _send(gw, keys, "cart-1", beat | {"a\x00b": 1}, mid=1) == "dead_letter"
    assert _audit(c) == {"invalid_payload": 1}
    assert _send(gw, keys, "cart-1", beat, mid=2) == "recorded"
    assert gw.counts["received"] == 2


def test_a_palm_entry_over_mqtt_names_the_gate_device(store: Any) -> None:
    c, gw, keys = store
    shopper = c.shoppers.register(display_name="P", payment_token="tok_p")
    c.shoppers.enrol_palm(shopper_id=shopper.id,
                          images=[encode_png(PALMS.capture(0, k)) for k in range(4)],
                          consent_text_version="2026-11")
    capture = PalmCaptureMessage(device_id="gate-1", device_seq=0, device_time=datetime.now(UTC),
                                 gate_id="g1", direction="entry",
                                 image=encode_png(PALMS.capture(0, 5))).model_dump(mode="json")
    assert _send(gw, keys, "gate-1", capture) == "applied"
    actors = {e.actor for e in c.audit.entries(limit=100) if e.action == "identify"}
    assert actors == {"device:gate-1"}


class _Link:
    def __init__(self, **_: Any) -> None:
        self.acked: list[int] = []
        self.dead: list[str] = []

    def publish(self, topic: str, payload: bytes) -> None:
        raise AssertionError("nothing to publish")

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def dead_letter(self, topic: str, original_topic: str, payload: bytes,
                    reason: str) -> None:
        self.dead.append(reason)


class _Broken:
    store_id = STORE

    def handle(self, received: Received) -> Any:
        raise RuntimeError("a bug \x00 in handling")


def test_an_unexpected_error_is_dead_lettered_and_acknowledged() -> None:
    consumer = GatewayConsumer(_Broken(), _Link)  # type: ignore[arg-type]
    consumer._on_message(Received(events_topic(STORE, "cart-1"), b"{}", 7, 1, False))
    link = consumer.link
    assert link.acked == [7]  # type: ignore[attr-defined]
    assert link.dead[0].startswith("internal_error: RuntimeError")  # type: ignore[attr-defined]
    assert "\x00" not in link.dead[0]  # type: ignore[attr-defined]


def test_a_seq_reused_for_another_message_is_a_conflicting_duplicate(store: Any) -> None:
    c, gw, keys = store
    now = datetime.now(UTC)
    beat = HeartbeatMessage(device_id="gate-1", device_seq=3, device_time=now,
                            uptime_s=5).model_dump(mode="json")
    assert _send(gw, keys, "gate-1", beat, mid=1) == "recorded"
    assert _send(gw, keys, "gate-1", beat, mid=2) == "duplicate"
    topic = events_topic(STORE, "gate-1")
    other = seal(keys["gate-1"], topic, beat | {"uptime_s": 6}, ts_ms=int(time.time() * 1000))
    handled = gw.handle(Received(topic, other, 3, 1, False))
    assert (handled.outcome, handled.reason_code) == ("rejected", "conflicting_duplicate")
    capture = PalmCaptureMessage(device_id="gate-1", device_seq=3, device_time=now,
                                 gate_id="g1", direction="entry",
                                 image=encode_png(PALMS.capture(0, 5))).model_dump(mode="json")
    frame = seal(keys["gate-1"], topic, capture, ts_ms=int(time.time() * 1000))
    handled = gw.handle(Received(topic, frame, 4, 1, False))
    assert (handled.outcome, handled.reason_code) == ("rejected", "conflicting_duplicate")
    assert len(handled.replies) == 1  # the refusal goes back to the gate


def test_a_database_hiccup_during_a_palm_entry_is_retried_and_answered(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    c, gw, keys = store
    shopper = c.shoppers.register(display_name="P", payment_token="tok_p")
    c.shoppers.enrol_palm(shopper_id=shopper.id,
                          images=[encode_png(PALMS.capture(0, k)) for k in range(4)],
                          consent_text_version="2026-11")
    real, calls = c.gates.enter_by_palm, []

    def flaky(**kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT ...", {}, Exception("database is locked"))
        return real(**kw)
    monkeypatch.setattr(c.gates, "enter_by_palm", flaky)
    capture = PalmCaptureMessage(device_id="gate-1", device_seq=0, device_time=datetime.now(UTC),
                                 gate_id="g1", direction="entry",
                                 image=encode_png(PALMS.capture(0, 5))).model_dump(mode="json")
    topic = events_topic(STORE, "gate-1")
    frame = seal(keys["gate-1"], topic, capture, ts_ms=int(time.time() * 1000))
    handled = gw.handle(Received(topic, frame, 1, 1, False))
    assert handled.outcome == "applied" and len(calls) == 2
    assert len(handled.replies) == 2  # open the gate, and a welcome
    assert len(c.read_model.with_status("open")) == 1
