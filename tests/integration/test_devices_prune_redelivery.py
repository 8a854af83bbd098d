"""What pruning the gateway's inbox means for a message redelivered after its row was
deleted (``storefront devices prune``): a palm capture that old is refused by the replay
window and opens no second session, an item event is still a duplicate through the cart
event log, and a heartbeat is recorded again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hardware.auth import seal
from hardware.messages import HeartbeatMessage, ItemEventMessage, PalmCaptureMessage
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import events_topic
from identity.imageio import encode_png
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.devices.gateway import Gateway, Handled
from storefront.devices.journal import GatewayJournal
from storefront.devices.models import DeviceMessage
from storefront.devices.service import build_gateway, device_registry
from storefront.settings import Settings
from tests.integration.test_mqtt_gateway_handling import enrolled_palm

STORE = "s1"
LATER = timedelta(days=40)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Container, Gateway, dict[str, bytes]]]:
    c = bootstrap(Settings(data_dir=tmp_path, store_id=STORE, database_url=None))
    c.catalogue.upsert(builtin_items())
    registry = device_registry(c)
    keys = {d: registry.add(store_id=STORE, device_id=d, kind=k)
            for d, k in (("cart-1", "cart"), ("gate-1", "gate"))}
    yield c, build_gateway(c, MqttSettings()), keys
    c.close()


def _deliver(gw: Gateway, key: bytes, body: dict[str, Any], *, age: timedelta) -> Handled:
    """Deliver ``body`` signed ``age`` before the gateway's clock (a frame queued that
    long at the broker)."""
    topic = events_topic(STORE, body["device_id"])
    ts_ms = int((time.time() - age.total_seconds()) * 1000)
    return gw.handle(Received(topic, seal(key, topic, body, ts_ms=ts_ms), 1, 1, False))


def _inbox_count(c: Container) -> int:
    with c.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(DeviceMessage)) or 0)


def test_messages_redelivered_after_their_inbox_rows_were_pruned(store) -> None:  # type: ignore[no-untyped-def]
    c, gw, keys = store
    palms = enrolled_palm(c)
    now = datetime.now(UTC)
    capture = PalmCaptureMessage(device_id="gate-1", device_seq=7, device_time=now,
                                 gate_id="g1", direction="entry",
                                 image=encode_png(palms.capture(0, 5))).model_dump(mode="json")
    beat = HeartbeatMessage(device_id="gate-1", device_seq=8, device_time=now,
                            uptime_s=60).model_dump(mode="json")
    assert _deliver(gw, keys["gate-1"], capture, age=timedelta(0)).outcome == "applied"
    session = c.read_model.with_status("open")[0].id
    item = ItemEventMessage(device_id="cart-1", device_seq=3, device_time=now, kind="picked",
                            session_id=session, product_code=builtin_items()[0].code,
                            quantity=1, confidence=0.9).model_dump(mode="json")
    assert _deliver(gw, keys["cart-1"], item, age=timedelta(0)).outcome == "applied"
    assert _deliver(gw, keys["gate-1"], beat, age=timedelta(0)).outcome == "recorded"
    assert _inbox_count(c) == 2  # the capture and the heartbeat; item events are not here

    report = GatewayJournal(c.db, lambda: now + LATER).prune_older_than(messages_days=30,
                                                                       audit_days=365)
    assert report.messages_deleted == 2 and _inbox_count(c) == 0

    again = _deliver(gw, keys["gate-1"], capture, age=LATER)
    assert (again.outcome, again.reason_code) == ("refused", "outside_replay_window")
    assert len(c.read_model.with_status("open")) == 1  # no second session
    assert _deliver(gw, keys["cart-1"], item, age=LATER).outcome == "duplicate"
    assert c.carts.cart(session).lines == {item["product_code"]: 1}
    assert _deliver(gw, keys["gate-1"], beat, age=LATER).outcome == "recorded"
    assert _inbox_count(c) == 1  # the heartbeat, recorded again with no other effect
