"""The gateway on a reused sequence number, on messages refused at routing and on retained
deliveries (no broker; SQLite and PostgreSQL).

Before: a palm capture reusing an earlier (device, seq) was answered with the earlier
shopper's stored ``open_gate`` whatever its image (only the message type was compared);
item events refused at routing left no ``device_audit`` row; a retained delivery was
handled like any other (so a retained capture ran again on every gateway restart).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hardware.auth import decode_frame, seal
from hardware.messages import ItemEventMessage, PalmCaptureMessage
from hardware.mqtt import Received
from hardware.settings import MqttSettings
from hardware.topics import events_topic
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.devices.gateway import Gateway, Handled
from storefront.devices.journal import GatewayJournal
from storefront.devices.models import DeviceAudit, DeviceMessage
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
            for d, k in (("cart-1", "cart"), ("gate-1", "gate"))}
    yield c, build_gateway(c, MqttSettings()), keys
    c.close()


def _send(gw: Gateway, keys: dict[str, bytes], device: str, body: dict[str, Any], *,
          retain: bool = False) -> Handled:
    topic = events_topic(STORE, device)
    frame = seal(keys[device], topic, body, ts_ms=int(time.time() * 1000))
    return gw.handle(Received(topic, frame, 1, 1, False, retain))


def _commands(handled: Handled) -> list[dict[str, Any]]:
    return [decode_frame(frame, 1 << 20).body for _, frame in handled.replies]


def _audit(c: Container) -> dict[str, int]:
    return GatewayJournal(c.db, lambda: datetime.now(UTC)).audit_counts()


def _enrol(c: Container) -> None:
    shopper = c.shoppers.register(display_name="P", payment_token="tok_p")
    c.shoppers.enrol_palm(shopper_id=shopper.id,
                          images=[encode_png(PALMS.capture(0, k)) for k in range(5)],
                          consent_text_version="2026-11")


def _capture(seq: int, image: bytes) -> dict[str, Any]:
    return PalmCaptureMessage(device_id="gate-1", device_seq=seq, device_time=datetime.now(UTC),
                              gate_id="g1", direction="entry", image=image
                              ).model_dump(mode="json")


def test_a_capture_reusing_a_sequence_number_never_opens_the_gate_again(store: Any) -> None:
    c, gw, keys = store
    _enrol(c)
    first_body = _capture(7, encode_png(PALMS.capture(0, 5)))
    first = _send(gw, keys, "gate-1", first_body)
    assert first.outcome == "applied"
    opened = [cmd for cmd in _commands(first) if cmd["type"] == "open_gate"]
    assert len(opened) == 1
    for image in (encode_png(PALMS.capture(9, 5)), b"not an image at all"):
        reused = _send(gw, keys, "gate-1", _capture(7, image))
        assert (reused.outcome, reused.reason_code) == ("rejected", "conflicting_duplicate")
        assert [cmd["type"] for cmd in _commands(reused)] == ["refuse"]
    again = _send(gw, keys, "gate-1", first_body)  # a true redelivery: the same answer
    assert again.outcome == "duplicate"
    assert [cmd for cmd in _commands(again) if cmd["type"] == "open_gate"] == opened
    assert len(c.read_model.with_status("open")) == 1
    assert _audit(c) == {"conflicting_duplicate": 2}
    with c.db() as db:
        row = db.get(DeviceMessage, ("gate-1", 7))
        assert row is not None and set(row.body or {}) == {"sha256"}  # no image kept


def test_a_capture_row_without_a_digest_is_not_replayed(store: Any) -> None:
    """An inbox row written before digests were kept cannot vouch for the content."""
    c, gw, keys = store
    _enrol(c)
    assert _send(gw, keys, "gate-1", _capture(3, encode_png(PALMS.capture(0, 5)))
                 ).outcome == "applied"
    with c.db.begin() as db:
        db.execute(sa.update(DeviceMessage).values(body=None))
    later = _send(gw, keys, "gate-1", _capture(3, encode_png(PALMS.capture(0, 6))))
    assert later.reason_code == "conflicting_duplicate"
    assert "open_gate" not in [cmd["type"] for cmd in _commands(later)]


def _item(seq: int, session: str, product: str, quantity: int = 1) -> dict[str, Any]:
    return ItemEventMessage(device_id="cart-1", device_seq=seq, device_time=datetime.now(UTC),
                            kind="picked", session_id=session, product_code=product,
                            quantity=quantity, confidence=0.9).model_dump(mode="json")


def test_item_events_refused_at_routing_are_audited_with_their_reason(store: Any) -> None:
    c, gw, keys = store
    shopper = c.shoppers.register(display_name="A", payment_token="tok_a")
    session = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    code = builtin_items()[0].code
    picked = _item(1, session, code)
    assert _send(gw, keys, "cart-1", picked).outcome == "applied"
    assert _send(gw, keys, "cart-1", picked).outcome == "duplicate"  # not a refusal
    refused = {
        "conflicting_duplicate": picked | {"quantity": 5},
        "not_found": _item(2, "ses_doesnotexist", code),
        "unknown_product": _item(3, session, "NO-SUCH-CODE"),
    }
    for expected, body in refused.items():
        handled = _send(gw, keys, "cart-1", body)
        assert (handled.outcome, handled.reason_code) == ("rejected", expected)
    c.checkout.exit(session)
    closed = _send(gw, keys, "cart-1", _item(4, session, code))
    assert closed.outcome == "rejected"
    assert _audit(c) == {"conflicting_duplicate": 1, "not_found": 1, "unknown_product": 1,
                         closed.reason_code: 1}
    with c.db() as db:
        rows = db.scalars(sa.select(DeviceAudit).order_by(DeviceAudit.id)).all()
    assert {r.device_id for r in rows} == {"cart-1"}
    assert all(r.reason and r.store_id == STORE for r in rows)
    assert "ses_doesnotexist" in rows[1].reason


def test_a_declined_entry_is_not_a_device_audit_refusal(store: Any) -> None:
    c, gw, keys = store
    _enrol(c)
    unknown = _send(gw, keys, "gate-1", _capture(1, encode_png(PALMS.capture(9, 5))))
    assert unknown.outcome == "rejected" and unknown.reason_code != "conflicting_duplicate"
    assert _audit(c) == {}
    unusable = _send(gw, keys, "gate-1", _capture(2, b"not an image"))
    assert unusable.reason_code == "unusable_capture"
    assert _audit(c) == {"unusable_capture": 1}


def test_a_retained_delivery_is_refused_and_not_acted_on(store: Any) -> None:
    c, gw, keys = store
    _enrol(c)
    handled = _send(gw, keys, "gate-1", _capture(1, encode_png(PALMS.capture(0, 5))),
                    retain=True)
    assert (handled.outcome, handled.reason_code) == ("refused", "retained_message")
    assert [cmd["reason_code"] for cmd in _commands(handled)] == ["retained_message"]
    assert c.read_model.with_status("open") == []
    assert _audit(c) == {"retained_message": 1}
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(DeviceMessage)) == 0
