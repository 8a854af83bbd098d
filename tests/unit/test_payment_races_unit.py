"""The rules that keep two paths from acting on one payment at once (no I/O).

``check_start``: a call may start only on a payment at rest, from a state its step
expects; ``late_answer_applies``: a slow call's answer still counts after a look-up
found nothing; the simulated processor's ``on_call`` pause point, and its own
serialisation of a capture racing a void on one authorization (in-memory state).
"""

from __future__ import annotations

import threading

import pytest

from storefront.errors import PaymentError
from storefront.payments import Operation, PaymentPending, SimulatedProcessor
from storefront.payments.journal import (
    IN_FLIGHT,
    IN_FLIGHT_STATES,
    PaymentBusy,
    Step,
    check_start,
    late_answer_applies,
)

REST_STATES = ("new", "authorized", "captured", "voided", "declined", "failed")


def _step(purpose: str, expect: frozenset[str] | None = None) -> Step:
    kind = {"hold": "authorize", "reauthorize": "authorize", "void_superseded": "void"}.get(
        purpose, purpose)
    return Step(purpose, kind, f"ses_1:{purpose}", 0, "auth_1",  # type: ignore[arg-type]
                lambda: Operation("void", "auth_1", "succeeded", 0), expect)


@pytest.mark.parametrize("purpose", ["hold", "reauthorize", "adjust", "capture", "void",
                                     "void_superseded"])
@pytest.mark.parametrize("state", sorted(IN_FLIGHT_STATES))
def test_no_call_starts_while_another_is_in_flight(purpose: str, state: str) -> None:
    with pytest.raises(PaymentBusy) as busy:
        check_start(state, _step(purpose))
    assert state in busy.value.reason and isinstance(busy.value, PaymentPending)


@pytest.mark.parametrize("state", REST_STATES)
def test_a_call_expecting_the_hold_starts_only_from_authorized(state: str) -> None:
    step = _step("capture", frozenset({"authorized"}))
    if state == "authorized":
        check_start(state, step)
    else:
        with pytest.raises(PaymentBusy, match=f"now {state}, not authorized"):
            check_start(state, step)


@pytest.mark.parametrize("state", REST_STATES)
def test_a_call_without_expectation_starts_from_any_rest_state(state: str) -> None:
    check_start(state, _step("void_superseded"))


@pytest.mark.parametrize("state", [*REST_STATES, *sorted(IN_FLIGHT_STATES)])
def test_refunds_leave_the_payment_state_alone_and_always_start(state: str) -> None:
    check_start(state, _step("refund", frozenset({"captured"})))


def test_every_kind_has_an_in_flight_state_that_is_no_rest_state() -> None:
    assert set(IN_FLIGHT) == {"authorize", "adjust", "capture", "void", "refund"}
    assert IN_FLIGHT_STATES.isdisjoint(REST_STATES)


@pytest.mark.parametrize(("op_state", "purpose", "payment_state", "prior", "applies"), [
    ("in_flight", "capture", "capturing", "authorized", True),
    ("in_flight", "refund", "captured", "captured", True),
    # Reconciliation said not applied and nothing started since: the late answer counts.
    ("not_applied", "capture", "authorized", "authorized", True),
    ("not_applied", "hold", "new", "new", True),
    # Something else started (or finished) on the payment since: the answer is dropped.
    ("not_applied", "capture", "voiding", "authorized", False),
    ("not_applied", "capture", "voided", "authorized", False),
    ("not_applied", "refund", "captured", "captured", False),
    # An answer already recorded is never overwritten.
    ("succeeded", "capture", "captured", "authorized", False),
    ("failed", "capture", "authorized", "authorized", False),
    ("declined", "hold", "declined", "new", False),
])
def test_late_answer_applies(op_state: str, purpose: str, payment_state: str, prior: str,
                             applies: bool) -> None:
    assert late_answer_applies(op_state, purpose, payment_state, prior) is applies


def test_on_call_runs_before_the_processor_state_and_can_stop_the_call() -> None:
    seen: list[tuple[str, str]] = []

    def refuse_captures(label: str, key: str) -> None:
        seen.append((label, key))
        if label == "capture":
            raise PaymentError("network down before the capture (test)")

    processor = SimulatedProcessor(seed=2, decline_rate=0.0, on_call=refuse_captures)
    auth = processor.authorize(token="tok", amount_minor=500, currency="GBP",
                               idempotency_key="a1")
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=300,
                          idempotency_key="c1")
    assert processor.lookup(kind="capture", idempotency_key="c1",
                            reference=auth.authorization_id) is None
    assert seen == [("authorize", "a1"), ("capture", "c1"), ("lookup", "capture:c1")]
    assert processor.captured_total() == 0


@pytest.mark.parametrize("first", ["capture", "void"])
def test_processor_lets_one_of_a_racing_capture_and_void_through(first: str) -> None:
    # Both calls wait at the pause point; the one named ``first`` goes into the
    # processor's state first and the other only once it has answered: that one wins,
    # the other is refused. Never both, never neither.
    gate = threading.Event()
    answered = {"capture": threading.Event(), "void": threading.Event()}

    def pause(label: str, _key: str) -> None:
        if label in answered:
            assert gate.wait(5.0)
            if label != first:
                assert answered[first].wait(5.0)

    processor = SimulatedProcessor(seed=4, decline_rate=0.0, on_call=pause)
    auth = processor.authorize(token="tok", amount_minor=800, currency="GBP",
                               idempotency_key="a")
    outcomes: dict[str, str] = {}

    def call(label: str) -> None:
        try:
            if label == "capture":
                processor.capture(authorization_id=auth.authorization_id, amount_minor=800,
                                  idempotency_key="c")
            else:
                processor.void(authorization_id=auth.authorization_id, idempotency_key="v")
            outcomes[label] = "done"
        except PaymentError:
            outcomes[label] = "refused"
        finally:
            answered[label].set()

    threads = [threading.Thread(target=call, args=(label,)) for label in ("capture", "void")]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10.0)
    second = "void" if first == "capture" else "capture"
    assert outcomes == {first: "done", second: "refused"}
    (hold,) = processor.holds()
    assert (hold["captured_minor"] is not None, hold["voided"]) == (
        first == "capture", first == "void")
