"""What one exit writes, and how durably (SQLite): the payment state is committed before
and after the processor call, at ``synchronous=FULL``, and every other step is one write
(issue 6: exit latency)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.db.models import DeviceNonce
from storefront.payments import Capture, SimulatedProcessor
from storefront.pricing import price_cart
from storefront.security.devices_http import DeviceRequestVerifier, sign_headers
from storefront.security.errors import AuthenticationRequired
from storefront.settings import Settings

ITEMS = builtin_items()
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


class SeeingProcessor(SimulatedProcessor):
    """Reads the database file through its own connection when asked to capture, as a
    process started after a crash at that moment would find it."""

    def __init__(self, database: Path) -> None:
        super().__init__(seed=1, decline_rate=0.0)
        self.database = database
        self.seen: list[tuple[str, str]] = []

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        with sqlite3.connect(self.database) as other:
            self.seen += other.execute(
                "SELECT p.state, o.state FROM payments p JOIN payment_operations o"
                " ON o.payment_id = p.id WHERE o.idempotency_key = ?",
                (idempotency_key,)).fetchall()
        return super().capture(authorization_id=authorization_id, amount_minor=amount_minor,
                               idempotency_key=idempotency_key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Container, SeeingProcessor]]:
    settings = Settings(data_dir=tmp_path / "store", entry_hold_minor=5000)
    processor = SeeingProcessor(tmp_path / "store" / "storefront.db")
    c = bootstrap(settings, processor=processor)
    c.catalogue.upsert(ITEMS)
    yield c, processor
    c.close()


def _session(c: Container, basket: list[tuple[int, int]]) -> tuple[str, int]:
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    for seq, (index, qty) in enumerate(basket):
        c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[index].code,
                        quantity=qty, device_id="cart-1", device_seq=seq, sensor_time=T0)
    return session_id, sum(ITEMS[i].unit_price_minor * q for i, q in basket)


def _record_writes(engine: sa.Engine) -> list[tuple[str, str, int]]:
    """(verb, table, synchronous level of the connection) of every write from now on."""
    writes: list[tuple[str, str, int]] = []

    def before(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            table = words[2] if verb in ("INSERT", "DELETE") else words[1]
            level = conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()
            writes.append((verb, table, int(level[0])))

    sa.event.listen(engine, "before_cursor_execute", before)
    return writes


def test_paid_exit_writes_each_step_once_and_the_payment_state_durably(
        store: tuple[Container, SeeingProcessor]) -> None:
    c, processor = store
    session_id, total = _session(c, [(0, 2), (3, 1)])
    writes = _record_writes(c.engine)
    result = c.checkout.exit(session_id)
    assert (result.status, result.total_minor) == ("paid", total)
    normal, full = 1, 2
    assert writes == [
        ("UPDATE", "shopping_sessions", normal),  # the exit lease (returns the row)
        ("INSERT", "cart_events", normal),  # SessionExited
        ("UPDATE", "shopping_sessions", normal),  # exited, with the priced cart
        ("INSERT", "payment_operations", full),  # capture journaled in flight ...
        ("UPDATE", "payments", full),  # ... with the payment, before the call
        ("UPDATE", "payment_operations", full),  # the answer ...
        ("UPDATE", "payments", full),  # ... and the payment's rest state, after it
        ("INSERT", "receipts", normal),
        ("INSERT", "cart_events", normal),  # SessionSettled
        ("UPDATE", "shopping_sessions", normal),  # settled, lease given back
    ]
    # Committed before the call: another connection saw the capture in flight.
    assert processor.seen == [("capturing", "in_flight")]
    with sqlite3.connect(processor.database) as other:
        row = other.execute("SELECT state, captured_minor FROM payments WHERE session_id = ?",
                            (session_id,)).fetchone()
        claim = other.execute("SELECT status, exit_claim, exited_at FROM shopping_sessions"
                              " WHERE id = ?", (session_id,)).fetchone()
    assert row == ("captured", total)
    assert claim[:2] == ("settled", None) and claim[2] is not None
    assert c.checkout.exit(session_id).receipt_id == result.receipt_id  # a retry: same answer


def test_exit_lease_is_taken_once_and_given_back_with_the_final_row(
        store: tuple[Container, SeeingProcessor]) -> None:
    c, _ = store
    session_id, _ = _session(c, [(1, 1)])
    read_model, lease = c.read_model, timedelta(seconds=30)
    view = read_model.claim(session_id, "first", T0, lease)
    assert view is not None and (view.id, view.status, view.exit_claim) == (
        session_id, "open", "first")
    assert read_model.claim(session_id, "second", T0 + timedelta(seconds=5), lease) is None
    taken = read_model.claim(session_id, "third", T0 + timedelta(seconds=31), lease)
    assert taken is not None and taken.exit_claim == "third"  # a dead holder's lease
    read_model.finish_exit(session_id, status="staffed", staffed_reason="test")
    assert read_model.get(session_id).exit_claim is None
    assert read_model.claim(session_id, "fourth", T0 + timedelta(hours=1), lease) is None
    assert read_model.claim("no-such-session", "x", T0, lease) is None


def test_price_cart_with_items_already_read_prices_the_same(
        store: tuple[Container, SeeingProcessor]) -> None:
    c, _ = store
    lines = {ITEMS[0].code: 3, ITEMS[2].code: 1}
    items = c.catalogue.get_many(lines)
    assert price_cart(lines, c.catalogue, "GBP", items=items) == price_cart(
        lines, c.catalogue, "GBP")


class Clock:
    """A settable clock (tz-aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_expired_nonces_are_pruned_at_most_once_a_second_and_replays_refused(
        store: tuple[Container, SeeingProcessor]) -> None:
    c, _ = store
    clock = Clock()
    key = c.security.registry.add(store_id=c.settings.store_id, device_id="gate-9", kind="gate")
    verifier = DeviceRequestVerifier(registry=c.security.registry, sessions=c.db, clock=clock,
                                     store_id=c.settings.store_id, window_s=60)

    def send(nonce: str) -> None:
        headers = sign_headers(key, device_id="gate-9", method="POST", path="/x", query="",
                               body=b"", ts_ms=int(clock.now.timestamp() * 1000), nonce=nonce)
        verifier.verify(method="POST", path="/x", query="", body=b"", headers=headers)

    def stored() -> int:
        with c.db() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(DeviceNonce)) or 0)

    send("a" * 32)
    with pytest.raises(AuthenticationRequired, match="replayed"):
        send("a" * 32)
    clock.now += timedelta(seconds=121)  # the first nonce expired (kept 2 x the window)
    send("b" * 32)  # prunes
    assert stored() == 1
    clock.now += timedelta(seconds=121)
    send("c" * 32)  # prunes "b"
    clock.now += timedelta(milliseconds=500)
    send("d" * 32)  # within a second of the last prune: no prune
    assert stored() == 2
    with pytest.raises(AuthenticationRequired, match="replayed"):
        send("c" * 32)
