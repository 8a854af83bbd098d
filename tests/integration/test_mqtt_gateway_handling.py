"""The gateway's checks on deliveries, without a broker: refusals are audited, never fatal."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hardware.auth import seal
from hardware.commands import OpenGateCommand
from hardware.messages import ItemEventMessage, PalmCaptureMessage
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import events_topic
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.clock import utc_now
from storefront.devices.gateway import Gateway
from storefront.devices.journal import GatewayJournal
from storefront.devices.service import build_gateway, device_registry
from storefront.settings import Settings

STORE = "s1"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Container, Gateway, dict[str, bytes]]:
    c = bootstrap(Settings(data_dir=tmp_path, store_id=STORE, database_url=None))
    c.catalogue.upsert(builtin_items())
    registry = device_registry(c)
    keys = {d: registry.add(store_id=STORE, device_id=d, kind=k)
            for d, k in (("cart-1", "cart"), ("cart-2", "cart"), ("gate-1", "gate"))}
    yield c, build_gateway(c, MqttSettings()), keys
    c.close()


def _deliver(gw: Gateway, topic: str, payload: bytes, mid: int = 1) -> str:
    return gw.handle(Received(topic, payload, mid, 1, False)).outcome


def _item(c: Container, device: str, seq: int) -> ItemEventMessage:
    shopper = c.shoppers.register(display_name="A", payment_token="tok_a")
    session = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    return ItemEventMessage(device_id=device, device_seq=seq, device_time=datetime.now(UTC),
                            kind="picked", session_id=session,
                            product_code=builtin_items()[0].code, quantity=2, confidence=0.9)


def _signed(key: bytes, topic: str, body: dict) -> bytes:  # type: ignore[type-arg]
    return seal(key, topic, body, ts_ms=int(time.time() * 1000))


def test_item_events_apply_once_and_refusals_are_audited(store) -> None:  # type: ignore[no-untyped-def]
    c, gw, keys = store
    topic = events_topic(STORE, "cart-1")
    body = _item(c, "cart-1", 0).model_dump(mode="json")
    assert _deliver(gw, topic, _signed(keys["cart-1"], topic, body)) == "applied"
    assert _deliver(gw, topic, _signed(keys["cart-1"], topic, body)) == "duplicate"
    frame = _signed(keys["cart-1"], topic, body)
    assert _deliver(gw, topic, frame) == "duplicate"
    assert _deliver(gw, topic, frame) == "duplicate"  # same nonce: a replay
    assert _deliver(gw, topic, _signed(keys["cart-2"], topic, body)) == "refused"
    other = events_topic(STORE, "cart-2")
    assert _deliver(gw, other, _signed(keys["cart-2"], other, body)) == "refused"  # misdirected
    ghost = events_topic(STORE, "ghost")
    assert _deliver(gw, ghost, _signed(keys["cart-1"], ghost, body)) == "refused"
    assert _deliver(gw, topic, b"{oops") == "dead_letter"
    bad = body | {"quantity": "2"}
    assert _deliver(gw, topic, _signed(keys["cart-1"], topic, bad)) == "dead_letter"
    assert _deliver(gw, "stores/s1/devices/cart-1/events/extra", b"{}") == "refused"
    audit = GatewayJournal(c.db, lambda: datetime.now(UTC)).audit_counts()
    assert audit == {"bad_signature": 1, "misdirected": 1, "unknown_device": 1,
                     "invalid_payload": 2, "bad_topic": 1}
    assert c.carts.cart(body["session_id"]).lines == {body["product_code"]: 2}


def test_random_garbage_never_crashes_the_gateway(store) -> None:  # type: ignore[no-untyped-def]
    _, gw, _ = store
    rng = random.Random(8)
    topics = [events_topic(STORE, "cart-1"), "a/b", "stores/s1/devices/+/events", "", "\u0000"]
    for n in range(300):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        assert _deliver(gw, rng.choice(topics), payload, n) in {"refused", "dead_letter"}
    assert gw.counts["received"] == 300


def enrolled_palm(c: Container) -> SyntheticPalms:
    """Register a shopper and enrol synthetic palm 0 (captures 0-4); returns the palms, whose
    capture (0, 5) is then a fresh capture of that shopper."""
    palms = SyntheticPalms(4242)
    shopper = c.shoppers.register(display_name="P", payment_token="tok_p")
    c.shoppers.enrol_palm(shopper_id=shopper.id,
                          images=[encode_png(palms.capture(0, k)) for k in range(5)],
                          consent_text_version="2026-11")
    return palms


def test_a_redelivered_palm_capture_opens_one_session(store) -> None:  # type: ignore[no-untyped-def]
    c, gw, keys = store
    palms = enrolled_palm(c)
    capture = PalmCaptureMessage(device_id="gate-1", device_seq=0, device_time=datetime.now(UTC),
                                 gate_id="g1", direction="entry",
                                 image=encode_png(palms.capture(0, 5)))
    topic = events_topic(STORE, "gate-1")
    body = capture.model_dump(mode="json")
    first = gw.handle(Received(topic, _signed(keys["gate-1"], topic, body), 1, 1, False))
    again = gw.handle(Received(topic, _signed(keys["gate-1"], topic, body), 2, 1, False))
    assert first.outcome == "applied" and again.outcome == "duplicate"
    assert [t for t, _ in first.replies] == [t for t, _ in again.replies]
    assert len(c.read_model.with_status("open")) == 1
    assert OpenGateCommand.model_fields  # the reply type exists on the wire


def test_build_gateway_takes_the_future_skew_setting(tmp_path: Path) -> None:
    """``STOREFRONT_DEVICE_MAX_FUTURE_SKEW_S`` reaches the MQTT gateway, not only HTTP: a
    device time 60 s ahead passes the default bound (300 s) and is refused at 30 s."""
    outcomes = {}
    for skew in (300.0, 30.0):
        c = bootstrap(Settings(data_dir=tmp_path / str(skew), store_id=STORE, database_url=None,
                               device_max_future_skew_s=skew))
        try:
            c.catalogue.upsert(builtin_items())
            key = device_registry(c).add(store_id=STORE, device_id="cart-1", kind="cart")
            gw = build_gateway(c, MqttSettings())
            topic = events_topic(STORE, "cart-1")
            ahead = datetime.now(UTC) + timedelta(seconds=60)
            body = _item(c, "cart-1", 0).model_copy(update={"device_time": ahead})
            result = gw.handle(Received(topic, _signed(key, topic, body.model_dump(mode="json")),
                                        1, 1, False))
            outcomes[skew] = (result.outcome, GatewayJournal(c.db, utc_now).audit_counts())
        finally:
            c.close()
    assert outcomes[300.0] == ("applied", {})
    assert outcomes[30.0] == ("refused", {"device_time_in_future": 1})
