"""Two paths calling the processor for one payment at the same time (SQLite and PostgreSQL).

Each test forces one interleaving deterministically: a call is paused at the simulated
processor (its ``on_call`` hook, where a slow network would hold it) or just before the
journal is asked to start it, while the other path runs. Afterwards the processor shows
exactly one effect on the hold (a capture or a void, never both, never two) and the
journal agrees with it: the payment's state, captured amount and no call left in flight.

Paths raced: the exit's capture, a release of the hold (the staffed-checkout route of
the exit), reconciliation (its look-ups of calls in flight and its release of stray
holds), the gate's entry hold, and a second exit that took a stale exit lease over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from clocks import FakeClock

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.db.models import Payment, PaymentOperation
from storefront.exit_payment import ExitPayment
from storefront.payments import Operation, SimulatedProcessor
from storefront.payments.journal import PaymentBusy, Step
from storefront.payments.reconcile import reconcile
from storefront.settings import Settings

ITEMS = builtin_items()
WAIT_S = 10.0  # upper bound on any wait for the other thread; never reached when correct


class NoIncrement(SimulatedProcessor):
    """A processor without incremental authorization (as Stripe by default): the exit
    re-authorizes a total above the hold and voids the superseded hold."""

    supports_adjust = False


@dataclass
class Outcome:
    """What a background call returned or raised."""

    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def join(self) -> Outcome:
        assert self.thread is not None
        self.thread.join(WAIT_S * 3)
        assert not self.thread.is_alive(), "background call did not finish"
        return self


def _in_thread(call: Callable[[], Any]) -> Outcome:
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.result = call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.error = exc

    outcome.thread = threading.Thread(target=run, daemon=True)
    outcome.thread.start()
    return outcome


class PauseFirst:
    """``on_call`` hook: the first processor call with label ``label`` signals ``reached``
    and waits (at most WAIT_S) for ``go`` before it reaches the processor's state."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.reached, self.go = threading.Event(), threading.Event()
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, label: str, key: str) -> None:
        with self._lock:
            first = label == self.label and not self.reached.is_set()
            self.calls.append((label, key))
            if first:
                self.reached.set()
        if first:
            self.go.wait(WAIT_S)


def _container(tmp_path: Path, url: str | None, processor: SimulatedProcessor, *,
               hold: int = 5000, exit_lease_s: float = 30.0) -> Container:
    settings = Settings(data_dir=tmp_path / "store", database_url=url, entry_hold_minor=hold,
                        exit_lease_s=exit_lease_s, payment_reconcile_after_s=3600.0)
    container = bootstrap(settings, processor=processor)
    container.catalogue.upsert(ITEMS)
    return container


def _shop(c: Container, basket: list[tuple[int, int]]) -> tuple[str, int]:
    """A session with ``basket`` (item index, units) picked; returns (id, total)."""
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    for seq, (index, units) in enumerate(basket):
        c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[index].code,
                        quantity=units, device_id="cart-1", device_seq=seq,
                        sensor_time=c.checkout.clock())
    return session_id, sum(ITEMS[i].unit_price_minor * units for i, units in basket)


def _payment(c: Container, session_id: str) -> Payment:
    with c.db() as db:
        return db.scalars(sa.select(Payment).where(Payment.session_id == session_id)).one()


def _ops(c: Container, payment_id: str) -> list[tuple[str, str]]:
    """(purpose, state) of the payment's journaled calls, oldest first."""
    with c.db() as db:
        return [(op.purpose, op.state) for op in db.scalars(
            sa.select(PaymentOperation).where(PaymentOperation.payment_id == payment_id)
            .order_by(PaymentOperation.created_at, PaymentOperation.id))]


def _assert_paid_once(c: Container, processor: SimulatedProcessor, pause: PauseFirst,
                      session_id: str, result: Any, total: int) -> Any:
    """The exit answered paid, the journal agrees with the processor, the payment is
    captured in full, and the processor saw one hold and one capture (look-ups aside)."""
    assert (result.status, result.total_minor) == ("paid", total)
    payment = _assert_journal_agrees(c, processor, session_id)
    assert (payment.state, payment.captured_minor) == ("captured", total)
    assert [label for label, _ in pause.calls if label != "lookup"] == ["authorize", "capture"]
    return payment


def _assert_journal_agrees(c: Container, processor: SimulatedProcessor,
                           session_id: str) -> Payment:
    """The payment's journal and the processor tell the same story of its hold."""
    payment = _payment(c, session_id)
    assert "in_flight" not in {state for _, state in _ops(c, payment.id)}
    holds = {h["id"]: h for h in processor.holds()}
    hold = holds[payment.processor_ref]
    captured, voided = hold["captured_minor"], hold["voided"]
    assert not (captured is not None and voided), "a hold both captured and voided"
    if payment.state == "captured":
        assert captured == payment.captured_minor and payment.capture_ref is not None
    elif payment.state == "voided":
        assert voided and captured is None
    elif payment.state == "authorized":
        assert captured is None and not voided
    else:
        raise AssertionError(f"unexpected payment state {payment.state}")
    return payment


def _wrap_run(payment: ExitPayment,
              around: Callable[[Callable[[str, Step], Operation], str, Step], Operation]) -> None:
    """Route ``payment``'s journal calls through ``around(run, payment_id, step)``."""
    run = payment.journal.run
    payment.journal.run = lambda payment_id, step: around(run, payment_id, step)  # type: ignore[method-assign]


def test_void_decided_before_a_capture_is_refused_while_the_capture_is_in_flight(
        tmp_path: Path, database: str | None) -> None:
    # The release read the payment (authorized) and decided to void; the exit's capture
    # then started and is in flight at the processor when the void is sent.
    pause = PauseFirst("capture")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor)
    session_id, total = _shop(c, [(0, 2), (3, 1)])
    releaser = ExitPayment(sessions=c.db, processor=processor, clock=c.checkout.clock)
    void_decided = threading.Event()

    def once_capture_is_in_flight(run: Callable[[str, Step], Operation], payment_id: str,
                                  step: Step) -> Operation:
        void_decided.set()
        assert pause.reached.wait(WAIT_S)
        try:
            return run(payment_id, step)
        finally:
            pause.go.set()

    _wrap_run(releaser, once_capture_is_in_flight)
    released = _in_thread(lambda: releaser.release(session_id=session_id))
    assert void_decided.wait(WAIT_S)
    result = c.checkout.exit(session_id)
    released.join()
    assert isinstance(released.error, PaymentBusy), released
    payment = _assert_paid_once(c, processor, pause, session_id, result, total)
    assert processor.captured_total() == total
    assert _ops(c, payment.id) == [("hold", "succeeded"), ("capture", "succeeded")]
    c.close()


def test_capture_decided_before_a_void_is_refused_while_the_void_is_in_flight(
        tmp_path: Path, database: str | None) -> None:
    # The exit read the payment (authorized) and decided to capture; a release then
    # started its void, which is in flight at the processor when the capture is sent.
    pause = PauseFirst("void")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor)
    session_id, total = _shop(c, [(0, 2), (3, 1)])
    capture_decided = threading.Event()

    def once_void_is_in_flight(run: Callable[[str, Step], Operation], payment_id: str,
                               step: Step) -> Operation:
        if step.purpose != "capture" or capture_decided.is_set():
            return run(payment_id, step)
        capture_decided.set()
        assert pause.reached.wait(WAIT_S)
        try:
            return run(payment_id, step)
        finally:
            pause.go.set()

    _wrap_run(c.checkout.payment, once_void_is_in_flight)
    releaser = ExitPayment(sessions=c.db, processor=processor, clock=c.checkout.clock)

    def release_once_capture_decided() -> str:
        assert capture_decided.wait(WAIT_S)
        return releaser.release(session_id=session_id)

    released = _in_thread(release_once_capture_decided)
    with pytest.raises(PaymentBusy):
        c.checkout.exit(session_id)
    assert released.join().error is None and released.result == "; hold released"
    # The exit asked again: the hold is gone, so the sale goes to staff, not charged.
    again = c.checkout.exit(session_id)
    assert again.status == "staffed" and again.total_minor == total
    payment = _assert_journal_agrees(c, processor, session_id)
    assert payment.state == "voided" and processor.captured_total() == 0
    assert "capture" not in {label for label, _ in pause.calls}
    c.close()


def test_stray_hold_release_never_voids_the_hold_of_a_live_exit(
        tmp_path: Path, database: str | None) -> None:
    # The exit re-authorized (1000 held, 1500 due): reconciliation lists the payment for
    # its superseded hold, the exit voids that hold itself, and only then does the
    # reconciliation's release run, with the exit about to capture the new hold.
    processor = NoIncrement(seed=3, decline_rate=0.0)
    c = _container(tmp_path, database, processor, hold=1000)
    session_id, total = _shop(c, [(4, 4)])
    assert total == 1500
    superseded_set, listed = threading.Event(), threading.Event()
    about_to_capture, stray_done = threading.Event(), threading.Event()

    def exit_side(run: Callable[[str, Step], Operation], payment_id: str,
                  step: Step) -> Operation:
        if step.purpose == "void_superseded" and not superseded_set.is_set():
            superseded_set.set()
            assert listed.wait(WAIT_S)
        elif step.purpose == "capture" and not about_to_capture.is_set():
            about_to_capture.set()
            assert stray_done.wait(WAIT_S)
        return run(payment_id, step)

    _wrap_run(c.checkout.payment, exit_side)
    sweeper = ExitPayment(sessions=c.db, processor=processor, clock=c.checkout.clock)
    release_stray = sweeper.release_stray

    def release_once_exit_moved_on(**kwargs: Any) -> int:
        listed.set()
        assert about_to_capture.wait(WAIT_S)
        try:
            return release_stray(**kwargs)
        finally:
            stray_done.set()

    sweeper.release_stray = release_once_exit_moved_on  # type: ignore[method-assign]

    def sweep() -> Any:
        assert superseded_set.wait(WAIT_S)
        return reconcile(payment=sweeper, read_model=c.read_model, clock=c.checkout.clock,
                         older_than=timedelta(hours=1), lease=timedelta(seconds=30))

    swept = _in_thread(sweep)
    result = c.checkout.exit(session_id)
    report = swept.join().result
    assert swept.error is None and report.holds_released == 0
    assert (result.status, result.total_minor) == ("paid", total)
    assert [(h["amount_minor"], h["voided"], h["captured_minor"]) for h in processor.holds()] == [
        (1000, True, None), (1500, False, 1500)]
    payment = _assert_journal_agrees(c, processor, session_id)
    assert (payment.state, payment.superseded_ref) == ("captured", None)
    c.close()


def test_late_capture_answer_overrides_reconciliation_that_found_nothing(
        tmp_path: Path, database: str | None) -> None:
    # A capture in flight longer than both the exit lease and the reconcile grace:
    # reconciliation takes the lease over, asks the processor (nothing there yet) and
    # records it not applied; then the slow call lands. The processor forgets keys, so
    # only the journal can keep the exit from capturing (or voiding) again.
    pause = PauseFirst("capture")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, remember_keys=False,
                                   on_call=pause)
    c = _container(tmp_path, database, processor)
    session_id, total = _shop(c, [(0, 2), (3, 1)])
    exiting = _in_thread(lambda: c.checkout.exit(session_id))
    assert pause.reached.wait(WAIT_S)
    report = reconcile(payment=c.checkout.payment, read_model=c.read_model,
                       clock=c.checkout.clock, older_than=timedelta(0), lease=timedelta(0))
    assert (report.looked_up, report.not_applied, report.busy) == (1, 1, 0)
    pause.go.set()
    result = exiting.join().result
    assert exiting.error is None
    _assert_paid_once(c, processor, pause, session_id, result, total)
    c.close()


def test_late_entry_hold_answer_overrides_reconciliation_that_found_nothing(
        tmp_path: Path, database: str | None) -> None:
    # The gate's hold (no session yet, so no lease) is slow; reconciliation records it
    # not applied; the hold then lands. It is recorded, not leaked, and the shopper enters.
    pause = PauseFirst("authorize")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor)
    shopper = c.shoppers.register(display_name="Bo", payment_token="tok_bo")
    entering = _in_thread(lambda: c.gates.open_session(shopper_id=shopper.id,
                                                       entry_method="app"))
    assert pause.reached.wait(WAIT_S)
    report = reconcile(payment=c.checkout.payment, read_model=c.read_model,
                       clock=c.checkout.clock, older_than=timedelta(0), lease=timedelta(0))
    assert (report.looked_up, report.not_applied, report.holds_released) == (1, 1, 0)
    pause.go.set()
    session_id = entering.join().result
    assert entering.error is None and session_id is not None
    payment = _assert_journal_agrees(c, processor, session_id)
    assert payment.state == "authorized"
    assert [h["amount_minor"] for h in processor.holds()] == [5000]
    c.close()


def test_reconcile_leaves_a_live_capture_alone_while_the_exit_lease_holds(
        tmp_path: Path, database: str | None) -> None:
    pause = PauseFirst("capture")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor)
    session_id, total = _shop(c, [(0, 2)])
    exiting = _in_thread(lambda: c.checkout.exit(session_id))
    assert pause.reached.wait(WAIT_S)
    report = reconcile(payment=c.checkout.payment, read_model=c.read_model,
                       clock=c.checkout.clock, older_than=timedelta(0), lease=timedelta(hours=1))
    assert (report.busy, report.looked_up) == (1, 0)
    assert _payment(c, session_id).state == "capturing"
    pause.go.set()
    assert exiting.join().error is None and exiting.result.status == "paid"
    payment = _assert_journal_agrees(c, processor, session_id)
    assert payment.captured_minor == total == processor.captured_total()
    assert not [key for label, key in pause.calls if label == "lookup"]
    c.close()


def _race_two_exits(tmp_path: Path, database: str | None
                    ) -> tuple[Container, PauseFirst, SimulatedProcessor, str, int, Outcome, Any]:
    """The first exit's capture outlives its lease (1 ms); a second exit takes the lease
    over, finds the capture in flight and resumes it under the same idempotency key;
    then the first capture's call goes on. Returns both exits' outcomes."""
    pause = PauseFirst("capture")
    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=pause)
    c = _container(tmp_path, database, processor, exit_lease_s=0.001)
    session_id, total = _shop(c, [(0, 2), (3, 1)])
    first = _in_thread(lambda: c.checkout.exit(session_id))
    assert pause.reached.wait(WAIT_S)
    second = c.checkout.exit(session_id)
    pause.go.set()
    first.join()
    return c, pause, processor, session_id, total, first, second


def test_exit_taking_a_stale_lease_over_a_live_capture_captures_once(
        tmp_path: Path, database: str | None) -> None:
    c, pause, processor, session_id, total, first, second = _race_two_exits(tmp_path, database)
    assert (second.status, second.total_minor) == ("paid", total)
    payment = _assert_journal_agrees(c, processor, session_id)
    assert payment.state == "captured" and processor.captured_total() == total
    captures = [key for label, key in pause.calls if label == "capture"]
    assert captures == [f"{session_id}:capture"] * 2  # the resumed call, the slow one
    assert _ops(c, payment.id) == [("hold", "succeeded"), ("capture", "succeeded")]
    assert c.read_model.get(session_id).status == "settled"
    c.close()


def test_exit_that_lost_its_lease_still_answers_paid(tmp_path: Path,
                                                     database: str | None) -> None:
    c, _, _, _, _, first, second = _race_two_exits(tmp_path, database)
    try:
        assert first.error is None, first.error
        assert (first.result.status, first.result.receipt_id) == ("paid", second.receipt_id)
    finally:
        c.close()


def test_slow_entry_hold_is_not_released_as_stray_until_it_has_rested(
        tmp_path: Path, database: str | None) -> None:
    # The hold call takes 90 s (clock moved by the processor hook): the payment was
    # created long ago, but its hold was recorded just now and the gate is about to
    # open the session. Reconciliation (grace 60 s) leaves it; once it has rested past
    # the grace without a session (the gate died), it is released.
    clock = FakeClock()

    def slow_hold(label: str, _key: str) -> None:
        if label == "authorize":
            clock.now += timedelta(seconds=90)

    processor = SimulatedProcessor(seed=1, decline_rate=0.0, on_call=slow_hold)
    settings = Settings(data_dir=tmp_path / "store", database_url=database,
                        entry_hold_minor=5000, payment_reconcile_after_s=3600.0)
    c = bootstrap(settings, processor=processor, clock=clock)
    shopper = c.shoppers.register(display_name="Cy", payment_token="tok_cy")
    session_id = "ses_gate_between_hold_and_open"
    outcome = c.checkout.payment.hold(session_id=session_id, shopper_id=shopper.id,
                                      token="tok_cy", amount_minor=5000, currency="GBP")
    assert outcome.captured
    grace = timedelta(seconds=60)
    clock.now += timedelta(seconds=1)
    early = reconcile(payment=c.checkout.payment, read_model=c.read_model, clock=clock,
                      older_than=grace, lease=timedelta(seconds=30))
    assert early.holds_released == 0
    assert _assert_journal_agrees(c, processor, session_id).state == "authorized"
    clock.now += grace
    late = reconcile(payment=c.checkout.payment, read_model=c.read_model, clock=clock,
                     older_than=grace, lease=timedelta(seconds=30))
    assert late.holds_released == 1
    assert _assert_journal_agrees(c, processor, session_id).state == "voided"
    c.close()
