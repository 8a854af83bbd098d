"""Follow-ups of the payment journal audit (issue 6) against a database, on SQLite and
PostgreSQL: two requests of one dispute refund once and never move it back from
``refunded``; a card tender is never written back over a state another request reached;
a gate that stalls past the reconciliation grace before opening its session loses its
hold, and the money stays safe (nothing captured, the exit goes to the staffed checkout).

Races are made deterministic by pausing the simulated processor (``on_call``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.db.models import Dispute, Payment, Tender
from storefront.disputes import DisputeService
from storefront.errors import Conflict, PaymentError
from storefront.payments import ProcessorTimeout, SimulatedProcessor
from storefront.payments.reconcile import reconcile
from storefront.settings import Settings

ITEMS = builtin_items()
WAIT_S = 10.0  # bound on any wait for the other thread; never reached when correct


class PauseRefund:
    """``on_call`` hook: the first refund signals ``reached``, waits for ``go``, then fails
    unsent when ``fail`` is set (a timeout) or goes on. Counts refund calls."""

    def __init__(self) -> None:
        self.reached, self.go = threading.Event(), threading.Event()
        self.fail = False
        self.refund_calls = 0
        self._lock = threading.Lock()

    def __call__(self, label: str, key: str) -> None:
        if label != "refund":
            return
        with self._lock:
            self.refund_calls += 1
            first = not self.reached.is_set()
            self.reached.set()
        if first:
            self.go.wait(WAIT_S)
            if self.fail:
                raise ProcessorTimeout("refund timed out (test)")


def _run(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _container(tmp_path: Path, url: str | None, processor: SimulatedProcessor, *,
               hold: int = 0) -> Container:
    settings = Settings(data_dir=tmp_path / "store", database_url=url, entry_hold_minor=hold,
                        payment_reconcile_after_s=3600.0)
    c = bootstrap(settings, processor=processor)
    c.catalogue.upsert(ITEMS)
    return c


def _paid_receipt(c: Container) -> str:
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[0].code,
                    quantity=2, device_id="cart-1", device_seq=0,
                    sensor_time=c.checkout.clock())
    result = c.checkout.exit(session_id)
    assert result.status == "paid" and result.receipt_id
    return result.receipt_id


def _dispute_args(receipt_id: str) -> dict[str, Any]:
    return {"receipt_id": receipt_id, "dispute_key": "d-1", "product_code": ITEMS[0].code,
            "quantity": 1, "reason": "damaged"}


def _stored_dispute(c: Container) -> Dispute:
    with c.db() as db:
        return db.scalars(sa.select(Dispute).where(Dispute.dispute_key == "d-1")).one()


def _refunded_total(processor: SimulatedProcessor) -> int:
    conn = processor._conn  # noqa: SLF001 - the test reads the processor's own books
    return int(conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds").fetchone()[0])


def test_two_requests_of_one_dispute_refund_once(tmp_path: Path,
                                                 database: str | None) -> None:
    """Request A is mid-call; request B of the same dispute is told to retry instead of
    refunding again (the processor here does not de-duplicate keys), and after A is done
    B's retry returns the refunded dispute without another call."""
    pause = PauseRefund()
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, remember_keys=False,
                                   on_call=pause)
    c = _container(tmp_path, database, processor)
    receipt_id = _paid_receipt(c)
    first, out = _run(lambda: c.disputes.dispute(**_dispute_args(receipt_id)))
    assert pause.reached.wait(WAIT_S)
    with pytest.raises(Conflict, match="in progress"):
        c.disputes.dispute(**_dispute_args(receipt_id))
    pause.go.set()
    first.join(WAIT_S * 3)
    assert "error" not in out and out["result"].state == "refunded"
    again = c.disputes.dispute(**_dispute_args(receipt_id))
    assert again.state == "refunded" and again.refunds == out["result"].refunds
    assert pause.refund_calls == 1
    assert _refunded_total(processor) == out["result"].card_refund_minor > 0
    c.close()


def test_a_late_failure_never_moves_a_refunded_dispute_back(tmp_path: Path,
                                                            database: str | None) -> None:
    """Request A's claim is taken over as dead (claim timeout 0) while its call is still
    running; B refunds and marks the dispute refunded; then A's call fails. Before the
    fix A's save wrote ``refunding`` and the part back to pending over B's result."""
    pause = PauseRefund()
    pause.fail = True
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor)
    receipt_id = _paid_receipt(c)
    eager = DisputeService(sessions=c.db, processor=processor, receipts=c.receipts,
                           clock=c.checkout.clock, claim_timeout=timedelta(0))
    first, out = _run(lambda: eager.dispute(**_dispute_args(receipt_id)))
    assert pause.reached.wait(WAIT_S)
    done = eager.dispute(**_dispute_args(receipt_id))  # takes the claim over
    assert done.state == "refunded"
    pause.go.set()
    first.join(WAIT_S * 3)
    assert isinstance(out.get("error"), PaymentError)
    stored = _stored_dispute(c)
    assert stored.state == "refunded" and stored.failure_reason is None
    assert [p["state"] for p in stored.refund_parts] == ["refunded"]
    assert stored.refund_parts[0]["refund_id"] == done.refunds[0]["refund_id"]
    assert _refunded_total(processor) == done.card_refund_minor
    c.close()


def test_a_card_tender_is_not_written_back_over_a_later_state(tmp_path: Path,
                                                              database: str | None) -> None:
    """A request that read the tender ``authorizing`` records ``authorized`` after another
    request of the same tender captured it: the capture stays, the stale request stops."""
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    c = _container(tmp_path, database, processor)
    now = c.checkout.clock()
    with c.db.begin() as db:
        db.add(Tender(id="tnd_1", session_id="ses_1", idempotency_key="ses_1:t1", kind="card",
                      state="captured", amount_minor=500, tendered_minor=500, change_minor=0,
                      currency="GBP", till_id="till-1", drawer_id=None, staff_id="staff-1",
                      authorization_id="auth_1", capture_id="cap_1", failure_reason=None,
                      created_at=now, updated_at=now))
    stale = Tender(id="tnd_1", state="authorizing", authorization_id=None, capture_id=None,
                   failure_reason=None)
    assert c.till._record(stale, "authorized", auth="auth_1") is False  # noqa: SLF001
    assert stale.state == "captured" and stale.capture_id == "cap_1"
    with c.db() as db:
        row = db.get(Tender, "tnd_1")
        assert row is not None and (row.state, row.capture_id) == ("captured", "cap_1")
    c.close()


def test_gate_stalled_past_the_grace_loses_its_hold_but_no_money_moves(
        tmp_path: Path, database: str | None) -> None:
    """Reconciliation runs while the gate is between recording its hold and opening the
    session (as a gate stalled for longer than payment_reconcile_after_s): the hold is
    released; the shopper is admitted, and the exit sends the sale to the staffed
    checkout. Nothing is captured, the hold is voided once."""
    processor = SimulatedProcessor(seed=1, decline_rate=0.0)
    c = _container(tmp_path, database, processor, hold=5000)
    carts_open = c.carts.open
    reports = []

    def stalled_open(*args: Any, **kwargs: Any) -> Any:
        reports.append(reconcile(payment=c.checkout.payment, read_model=c.read_model,
                                 clock=lambda: c.checkout.clock() + timedelta(hours=2),
                                 older_than=timedelta(hours=1), lease=timedelta(minutes=5)))
        return carts_open(*args, **kwargs)

    c.carts.open = stalled_open  # type: ignore[method-assign]
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    assert reports and reports[0].holds_released == 1
    c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[0].code,
                    quantity=1, device_id="cart-1", device_seq=0,
                    sensor_time=c.checkout.clock())
    result = c.checkout.exit(session_id)
    assert result.status == "staffed"
    assert processor.captured_total() == 0
    holds = processor.holds()
    assert len(holds) == 1 and holds[0]["voided"] and holds[0]["captured_minor"] is None
    with c.db() as db:
        state = db.scalar(sa.select(Payment.state).where(Payment.session_id == session_id))
    assert state == "voided"
    c.close()
