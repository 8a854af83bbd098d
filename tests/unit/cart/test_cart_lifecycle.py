"""Lifecycle additions: shopping, abandonment sweep, companions and their carts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cart.errors import InvalidCommand, SessionClosed
from cart.event_store import InMemoryEventStore
from cart.events import CartScaleChanged, CartScanned, ItemPicked
from cart.projections import device_sessions
from cart.service import SessionService
from cart.session import SessionStatus, fold, fold_control

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
GTIN = "7038010009457"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def service_with_clock() -> tuple[SessionService, InMemoryEventStore, Clock]:
    clock = Clock()
    store = InMemoryEventStore(clock)
    return SessionService(store, clock), store, clock


def test_first_device_event_moves_open_to_shopping_and_exit_still_works() -> None:
    service, _, _ = service_with_clock()
    assert service.open("s-1", "payer", "store-1", "palm").status is SessionStatus.OPEN
    service.record_device_event("s-1", ItemPicked(GTIN, 1, "cart-1", 1, T0, 1.0))
    assert service.state("s-1").status is SessionStatus.SHOPPING
    state, cart = service.exit("s-1")
    assert state.status is SessionStatus.EXITED and cart.lines == {GTIN: 1}


def test_abandon_stale_closes_only_idle_active_sessions() -> None:
    service, _, clock = service_with_clock()
    for sid in ("idle", "busy", "gone"):
        service.open(sid, f"shopper-{sid}", "store-1", "palm")
    service.exit("gone")
    clock.now = T0 + timedelta(hours=2)
    service.record_device_event("busy", ItemPicked(GTIN, 1, "cart-b", 1, clock.now, 1.0))
    clock.now = T0 + timedelta(hours=2, minutes=30)
    assert service.abandon_stale(timedelta(hours=1)) == ["idle"]
    idle = service.state("idle")
    assert idle.status is SessionStatus.ABANDONED and idle.abandoned_at == clock.now
    assert service.abandon_stale(timedelta(hours=1)) == []  # idempotent sweep
    with pytest.raises(SessionClosed):
        service.record_device_event("idle", ItemPicked(GTIN, 1, "cart-i", 1, T0, 1.0))
    assert service.send_to_staffed("idle", "abandoned cart").status is SessionStatus.STAFFED
    with pytest.raises(InvalidCommand):
        service.abandon_stale(timedelta(0))


def test_companions_items_land_on_the_payers_cart() -> None:
    service, store, _ = service_with_clock()
    service.open("s-1", "payer", "store-1", "palm")
    state = service.join_companion("s-1", "child", "gate-2")
    assert state.companions == ("child",) and state.shoppers == ("payer", "child")
    service.register_cart_device("s-1", "cart-7", "child")
    service.register_cart_device("s-1", "cart-1", "payer")
    assert service.state("s-1").cart_devices == (("cart-1", "payer"), ("cart-7", "child"))
    results = service.record_items("s-1", [
        CartScanned(GTIN, "cart-7", 1, T0), CartScaleChanged(380, "cart-7", 2, T0),
        ItemPicked(GTIN, 2, "cart-1", 1, T0, 1.0),
    ])
    assert [r.outcome for r in results] == ["recorded"] * 3
    assert service.cart("s-1").lines == {GTIN: 3}
    feed = [(s.session_id, s.event) for s in store.since(0, 100)]
    assert device_sessions(feed) == {"cart-1": "s-1", "cart-7": "s-1"}
    service.exit("s-1")
    assert device_sessions([(s.session_id, s.event) for s in store.since(0, 100)]) == {}


def test_membership_rules() -> None:
    service, _, _ = service_with_clock()
    service.open("s-1", "payer", "store-1", "palm")
    service.join_companion("s-1", "child")
    for who in ("payer", "child"):
        with pytest.raises(InvalidCommand, match="already"):
            service.join_companion("s-1", who)
    with pytest.raises(InvalidCommand, match="neither the payer nor a companion"):
        service.register_cart_device("s-1", "cart-9", "stranger")
    service.register_cart_device("s-1", "cart-9", "child")
    with pytest.raises(InvalidCommand, match="already registered"):
        service.register_cart_device("s-1", "cart-9", "payer")
    service.exit("s-1")
    with pytest.raises(SessionClosed):
        service.join_companion("s-1", "late")


def test_fold_control_equals_the_full_fold() -> None:
    service, store, _ = service_with_clock()
    service.open("s-1", "payer", "store-1", "palm")
    service.join_companion("s-1", "child")
    service.record_items("s-1", [ItemPicked(GTIN, 1, "cart-1", i, T0, 1.0) for i in range(4)])
    service.register_cart_device("s-1", "cart-1", "child")
    version, control = store.load_control("s-1")
    full = fold(s.event for s in store.load("s-1"))
    assert fold_control((s.event for s in control), version) == full
    assert full is not None and full.item_event_count == 4 and full.version == 7
    with pytest.raises(InvalidCommand):
        fold_control((s.event for s in control), 1)


def test_batch_on_a_stale_cached_head_retries_and_sees_the_closed_session() -> None:
    clock = Clock()
    store = InMemoryEventStore(clock)
    writer, other = SessionService(store, clock), SessionService(store, clock)
    writer.open("s-1", "payer", "store-1", "palm")
    writer.record_items("s-1", [ItemPicked(GTIN, 1, "cart-1", 1, T0, 1.0)])  # caches head
    other.exit("s-1")
    with pytest.raises(SessionClosed):
        writer.record_items("s-1", [ItemPicked(GTIN, 1, "cart-1", 2, T0, 1.0)])
    assert len(store.load("s-1")) == 3
