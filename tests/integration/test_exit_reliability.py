"""The exit flow under races, crashes and processor failures (SQLite and PostgreSQL).

A session is charged at most once, every concurrent caller sees the same outcome,
a retry after a crash resumes from the stored payment state, and a hold whose
capture failed is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.db.models import Payment, Receipt, ShoppingSession
from storefront.errors import PaymentError
from storefront.payments import Capture, SimulatedProcessor
from storefront.settings import Settings

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ITEMS = builtin_items()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("postgres_url")


def _container(tmp_path: Path, url: str | None, processor: SimulatedProcessor) -> Container:
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=url),
                          processor=processor)
    container.catalogue.upsert(ITEMS)
    return container


def _session_with_items(c: Container, device: str = "cart-1") -> tuple[str, int]:
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    for seq, (item, qty) in enumerate([(ITEMS[0], 2), (ITEMS[3], 1)]):
        c.ingest.record(session_id=session_id, kind="picked", product_code=item.code,
                        quantity=qty, device_id=device, device_seq=seq,
                        sensor_time=T0 + timedelta(seconds=seq))
    return session_id, 2 * ITEMS[0].unit_price_minor + ITEMS[3].unit_price_minor


def _payment_rows(c: Container, session_id: str) -> list[Payment]:
    with c.db() as db:
        return list(db.scalars(sa.select(Payment).where(Payment.session_id == session_id)))


def test_concurrent_exits_charge_once_and_agree(tmp_path: Path, database: str | None) -> None:
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    c = _container(tmp_path, database, processor)
    session_id, total = _session_with_items(c)
    results, errors = [], []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        try:
            results.append(c.checkout.exit(session_id))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {(r.status, r.receipt_id, r.total_minor) for r in results} == {
        ("paid", results[0].receipt_id, total)}
    assert processor.captured_total() == total
    assert len(_payment_rows(c, session_id)) == 1
    assert c.read_model.get(session_id).status == "settled"
    c.close()


def test_retry_after_crash_between_capture_and_receipt_never_charges_twice(
        tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    first = SimulatedProcessor(seed=1, decline_rate=0.0)
    c = _container(tmp_path, database, first)
    session_id, total = _session_with_items(c)
    crash = RuntimeError("process died after the capture")

    def die(*_args: object, **_kwargs: object) -> None:
        raise crash

    monkeypatch.setattr(type(c.checkout), "_issue_receipt", die)
    with pytest.raises(RuntimeError):
        c.checkout.exit(session_id)
    monkeypatch.undo()
    assert first.captured_total() == total
    c.close()
    # A restarted process with a processor that remembers no idempotency keys.
    second = SimulatedProcessor(seed=1, decline_rate=0.0)
    c2 = _container(tmp_path, database, second)
    result = c2.checkout.exit(session_id)
    assert result.status == "paid" and result.total_minor == total
    assert second.captured_total() == 0
    assert [p.state for p in _payment_rows(c2, session_id)] == ["captured"]
    c2.close()


def test_stale_exit_claim_is_taken_over(tmp_path: Path, database: str | None) -> None:
    c = _container(tmp_path, database, SimulatedProcessor(seed=1, decline_rate=0.0))
    session_id, total = _session_with_items(c)
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    with c.db.begin() as db:  # a process died holding the exit lease
        db.execute(sa.update(ShoppingSession).where(ShoppingSession.id == session_id)
                   .values(exit_claim="dead-process", exit_claimed_at=long_ago))
    assert c.checkout.exit(session_id).total_minor == total
    c.close()


class _CaptureFails(SimulatedProcessor):
    def __init__(self) -> None:
        super().__init__(seed=1, decline_rate=0.0)
        self.voided: list[str] = []

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        raise PaymentError("processor answered 503 (simulated)")

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        super().void(authorization_id=authorization_id, idempotency_key=idempotency_key)
        self.voided.append(authorization_id)


def test_failed_capture_releases_the_hold_and_goes_to_staff(tmp_path: Path,
                                                             database: str | None) -> None:
    processor = _CaptureFails()
    c = _container(tmp_path, database, processor)
    session_id, total = _session_with_items(c)
    result = c.checkout.exit(session_id)
    assert result.status == "staffed" and result.total_minor == total
    assert result.reason is not None and "503" in result.reason and "released" in result.reason
    assert len(processor.voided) == 1
    assert [p.state for p in _payment_rows(c, session_id)] == ["voided"]
    again = c.checkout.exit(session_id)
    assert again == result and len(processor.voided) == 1
    assert [q["id"] for q in c.checkout.staffed_queue()] == [session_id]
    c.close()


def test_many_devices_on_one_session_lose_no_event(tmp_path: Path,
                                                   database: str | None) -> None:
    c = _container(tmp_path, database, SimulatedProcessor(seed=1, decline_rate=0.0))
    shopper = c.shoppers.register(display_name="Bo", payment_token="tok_bo")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    errors: list[Exception] = []
    barrier = threading.Barrier(12)

    def device(n: int) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            try:
                c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[1].code,
                                quantity=1, device_id=f"shelf-{n}", device_seq=0,
                                sensor_time=T0 + timedelta(seconds=n))
            except Exception as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)
        return run

    threads = [threading.Thread(target=device(n)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.carts.cart(session_id).lines == {ITEMS[1].code: 12}
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 0
    c.close()


def _weighed(c: Container, code: str, grams: int, label: int | None = None) -> str:
    from cart.events import WeighedItemAdded

    shopper = c.shoppers.register(display_name="Wei", payment_token="tok_wei")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.carts.record_device_event(session_id, WeighedItemAdded(
        code=code, grams=grams, device_id=f"scale-{session_id[-8:]}", device_seq=0, sensor_time=T0,
        confidence=1.0, label_price_minor=label))
    return session_id


def test_weighed_goods_are_priced_per_kg_or_sent_to_staff(tmp_path: Path) -> None:
    from storefront.catalog import make_item

    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    c = _container(tmp_path, None, processor)
    c.catalogue.upsert([make_item("4011", "Bananas per kg", 199, "GBP", sold_by_weight=True)])
    paid = c.checkout.exit(_weighed(c, "4011", 1250))
    # 1.99 GBP/kg x 1.250 kg = 248.75 p, rounded half up to 249 p.
    assert paid.status == "paid" and paid.total_minor == 249
    labelled = c.checkout.exit(_weighed(c, "4011", 500, label=120))
    assert labelled.status == "staffed" and labelled.reason is not None
    assert "staff check" in labelled.reason
    not_by_weight = c.checkout.exit(_weighed(c, ITEMS[0].code, 300))
    assert not_by_weight.status == "staffed"
    assert processor.captured_total() == 249
    c.close()
