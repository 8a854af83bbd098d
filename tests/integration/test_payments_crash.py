"""A crash at every processor step, then a restart: exactly one capture, no hold left open.

The processor outlives the crashed process (as a real one would) but is set to
forget idempotency keys, so the service's own journal is what prevents a second
charge. Every retry of a call reuses its idempotency key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.db.models import Payment, PaymentOperation
from storefront.payments import (
    Authorization,
    Capture,
    Operation,
    OperationKind,
    ProcessorTimeout,
    SimulatedProcessor,
)
from storefront.settings import Settings

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ITEMS = builtin_items()


class Crash(BaseException):
    """The process dies (not an Exception: nothing may catch it)."""


class CrashingProcessor(SimulatedProcessor):
    """Dies before or after the n-th call of one kind; records (kind, key) of every call."""

    def __init__(self, *, crash_on: str | None = None, when: str = "before",
                 transient_first: bool = False) -> None:
        super().__init__(seed=1, decline_rate=0.0, remember_keys=False)
        self.crash_on, self.when = crash_on, when
        self.transient_first = transient_first
        self.calls: list[tuple[str, str]] = []

    def _around(self, kind: str, key: str, run):  # type: ignore[no-untyped-def]
        self.calls.append((kind, key))
        first_of_key = sum(1 for c in self.calls if c == (kind, key)) == 1
        if kind == self.crash_on and self.when == "before":
            self.crash_on = None
            raise Crash(f"died before {kind}")
        result = run()
        if kind == self.crash_on and self.when == "after":
            self.crash_on = None
            raise Crash(f"died after {kind}")
        if self.transient_first and first_of_key:
            raise ProcessorTimeout(f"{kind} answer lost (test)")
        return result

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        return self._around("authorize", idempotency_key, lambda: super(
            CrashingProcessor, self).authorize(token=token, amount_minor=amount_minor,
                                               currency=currency,
                                               idempotency_key=idempotency_key))

    def adjust(self, *, authorization_id: str, amount_minor: int,
               idempotency_key: str) -> Authorization:
        return self._around("adjust", idempotency_key, lambda: super(
            CrashingProcessor, self).adjust(authorization_id=authorization_id,
                                            amount_minor=amount_minor,
                                            idempotency_key=idempotency_key))

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        return self._around("capture", idempotency_key, lambda: super(
            CrashingProcessor, self).capture(authorization_id=authorization_id,
                                             amount_minor=amount_minor,
                                             idempotency_key=idempotency_key))

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        self._around("void", idempotency_key, lambda: super(CrashingProcessor, self).void(
            authorization_id=authorization_id, idempotency_key=idempotency_key))

    def lookup(self, *, kind: OperationKind, idempotency_key: str,
               reference: str | None) -> Operation | None:
        self.calls.append(("lookup", idempotency_key))
        return super().lookup(kind=kind, idempotency_key=idempotency_key, reference=reference)


def _container(tmp_path: Path, processor: SimulatedProcessor, hold: int) -> Container:
    settings = Settings(data_dir=tmp_path / "store", entry_hold_minor=hold,
                        payment_reconcile_after_s=0.0)
    c = bootstrap(settings, processor=processor)
    c.catalogue.upsert(ITEMS)
    return c


def _shop(c: Container, shopper_id: str, units: int) -> str:
    session_id = c.gates.open_session(shopper_id=shopper_id, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[4].code,
                    quantity=units, device_id="cart-1", device_seq=0, sensor_time=T0)
    return session_id


def _captures(processor: SimulatedProcessor) -> list[dict[str, object]]:
    return [h for h in processor.holds() if h["captured_minor"] is not None]


def _open_holds(processor: SimulatedProcessor) -> list[dict[str, object]]:
    return [h for h in processor.holds() if h["status"] == "authorized"
            and h["captured_minor"] is None and not h["voided"]]


@pytest.mark.parametrize("hold", [0, 5000, 1000])
@pytest.mark.parametrize("step", ["authorize", "adjust", "capture", "void"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_at_every_step_then_restart_captures_exactly_once(
        tmp_path: Path, hold: int, step: str, when: str) -> None:
    # hold 0: authorize at exit; 5000: capture under the hold (void released nothing);
    # 1000: the total (5 x 375 = 1875) exceeds the hold, which is raised in place.
    processor = CrashingProcessor()
    c = _container(tmp_path, processor, hold)
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = _shop(c, shopper.id, 5)
    processor.crash_on, processor.when = step, when
    try:
        result = c.checkout.exit(session_id)
    except Crash:
        result = None
    c.close()
    restarted = _container(tmp_path, processor, hold)  # reconciles at start
    again = restarted.checkout.exit(session_id)
    assert again.status == "paid" and again.total_minor == 1875
    if result is not None:
        assert result == again
    assert [h["captured_minor"] for h in _captures(processor)] == [1875]
    assert _open_holds(processor) == []
    with restarted.db() as db:
        states = list(db.scalars(sa.select(PaymentOperation.state)))
    assert "in_flight" not in states
    restarted.close()


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_during_entry_hold_leaves_no_hold_after_restart(tmp_path: Path,
                                                              when: str) -> None:
    processor = CrashingProcessor(crash_on="authorize", when=when)
    c = _container(tmp_path, processor, 5000)
    shopper = c.shoppers.register(display_name="Bo", payment_token="tok_bo")
    with pytest.raises(Crash):
        c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.close()
    restarted = _container(tmp_path, processor, 5000)
    assert _open_holds(processor) == []
    assert _captures(processor) == []
    # The shopper owes nothing and may enter.
    session_id = _shop(restarted, shopper.id, 1)
    assert restarted.checkout.exit(session_id).status == "paid"
    restarted.close()


def test_crash_before_receipt_then_restart_issues_one_receipt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    processor = CrashingProcessor()
    c = _container(tmp_path, processor, 5000)
    shopper = c.shoppers.register(display_name="Cy", payment_token="tok_cy")
    session_id = _shop(c, shopper.id, 2)

    def die(*_args: object, **_kwargs: object) -> None:
        raise Crash("died before the receipt")

    monkeypatch.setattr(type(c.checkout), "_issue_receipt", die)
    with pytest.raises(Crash):
        c.checkout.exit(session_id)
    monkeypatch.undo()
    c.close()
    restarted = _container(tmp_path, processor, 5000)
    result = restarted.checkout.exit(session_id)
    assert result.status == "paid" and result.receipt_id is not None
    assert [h["captured_minor"] for h in _captures(processor)] == [750]
    restarted.close()


def test_every_retry_reuses_the_idempotency_key(tmp_path: Path) -> None:
    # Each call's first answer is lost (timeout after success): the service looks it
    # up, finds it done, and never sends a second call under a new key.
    processor = CrashingProcessor(transient_first=True)
    c = _container(tmp_path, processor, 1000)
    shopper = c.shoppers.register(display_name="Di", payment_token="tok_di")
    session_id = _shop(c, shopper.id, 5)
    assert c.checkout.exit(session_id).status == "paid"
    sent = [(kind, key) for kind, key in processor.calls if kind != "lookup"]
    assert sorted({kind for kind, _ in sent}) == ["adjust", "authorize", "capture"]
    assert all(key.startswith(session_id) for _, key in sent)
    assert len(sent) == len(set(sent)) == 3  # each call sent once, found by look-up
    looked_up = {key for kind, key in processor.calls if kind == "lookup"}
    assert looked_up == {key for _, key in sent}
    assert [h["captured_minor"] for h in _captures(processor)] == [1875]
    with c.db() as db:
        keys = list(db.scalars(sa.select(PaymentOperation.idempotency_key)
                               .order_by(PaymentOperation.created_at)))
        payment = db.scalars(sa.select(Payment)).one()
    assert keys == [f"{session_id}:authorize", f"{session_id}:adjust:1875",
                    f"{session_id}:capture"]
    assert (payment.state, payment.captured_minor) == ("captured", 1875)
    c.close()


def test_reconcile_skips_calls_younger_than_the_grace(tmp_path: Path) -> None:
    processor = CrashingProcessor(crash_on="capture", when="after")
    c = _container(tmp_path, processor, 5000)
    shopper = c.shoppers.register(display_name="Ed", payment_token="tok_ed")
    session_id = _shop(c, shopper.id, 1)
    with pytest.raises(Crash):
        c.checkout.exit(session_id)
    from storefront.payments.reconcile import reconcile

    young = reconcile(payment=c.checkout.payment, read_model=c.read_model,
                      clock=lambda: datetime.now(UTC), older_than=timedelta(minutes=5),
                      lease=timedelta(seconds=30))
    assert young.looked_up == 0
    done = reconcile(payment=c.checkout.payment, read_model=c.read_model,
                     clock=lambda: datetime.now(UTC), older_than=timedelta(0),
                     lease=timedelta(seconds=30))
    assert (done.looked_up, done.completed) == (1, 1)
    assert c.checkout.exit(session_id).status == "paid"
    assert [h["captured_minor"] for h in _captures(processor)] == [375]
    c.close()
