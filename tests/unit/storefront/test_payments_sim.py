"""The simulated processor's faults, look-ups, adjust and refunds; bounded retries."""

from __future__ import annotations

import pytest

from storefront.errors import PaymentError
from storefront.payments import (
    FaultPlan,
    Operation,
    ProcessorTimeout,
    ProcessorUnavailable,
    RetryPolicy,
    SimulatedProcessor,
    call_with_retry,
)


def _outcomes(seed: int, plan: FaultPlan) -> list[str]:
    p = SimulatedProcessor(seed=seed, decline_rate=0.0, faults=plan)
    out = []
    for i in range(600):
        try:
            auth = p.authorize(token="tok", amount_minor=100, currency="GBP",
                               idempotency_key=f"k{i}")
            out.append(auth.status)
        except ProcessorTimeout:
            out.append("timeout")
        except ProcessorUnavailable:
            out.append("5xx")
    return out


def test_faults_are_seeded_and_near_the_rate() -> None:
    plan = FaultPlan(rate=0.3)
    first = _outcomes(5, plan)
    assert first == _outcomes(5, plan)
    failed = sum(o != "authorized" for o in first) / len(first)
    assert 0.25 < failed < 0.35
    assert {"declined", "timeout", "5xx"} <= set(first)


def test_success_after_timeout_is_found_by_lookup() -> None:
    p = SimulatedProcessor(seed=1, decline_rate=0.0,
                           faults=FaultPlan(rate=1.0, decline=0, timeout_before=0,
                                            server_error=0))
    with pytest.raises(ProcessorTimeout):
        p.authorize(token="tok", amount_minor=800, currency="GBP", idempotency_key="a")
    # The hold exists although the caller never heard of it.
    assert [(h["key"], h["amount_minor"]) for h in p.holds()] == [("a", 800)]


def test_lookup_finds_each_kind_of_call() -> None:
    p = SimulatedProcessor(seed=1, decline_rate=0.0, remember_keys=False)
    auth = p.authorize(token="tok", amount_minor=500, currency="GBP", idempotency_key="h")
    ref = auth.authorization_id
    assert p.lookup(kind="authorize", idempotency_key="h", reference=None) == Operation(
        "authorize", ref, "succeeded", 500)
    assert p.lookup(kind="capture", idempotency_key="c", reference=ref) is None
    assert p.adjust(authorization_id=ref, amount_minor=900,
                    idempotency_key="adj").amount_minor == 900
    assert p.lookup(kind="adjust", idempotency_key="adj", reference=ref) == Operation(
        "adjust", ref, "succeeded", 900)
    cap = p.capture(authorization_id=ref, amount_minor=850, idempotency_key="c")
    assert p.lookup(kind="capture", idempotency_key="c", reference=ref) == Operation(
        "capture", cap.capture_id, "succeeded", 850)
    with pytest.raises(PaymentError):  # the hold is closed; no key memory to replay
        p.capture(authorization_id=ref, amount_minor=850, idempotency_key="c")
    refund = p.refund(capture_id=cap.capture_id, amount_minor=300, idempotency_key="r")
    assert p.lookup(kind="refund", idempotency_key="r", reference=None) == Operation(
        "refund", refund.refund_id, "succeeded", 300)


def test_refunds_partial_then_full_never_above_the_capture() -> None:
    p = SimulatedProcessor(seed=1, decline_rate=0.0)
    auth = p.authorize(token="tok", amount_minor=1000, currency="GBP", idempotency_key="a")
    cap = p.capture(authorization_id=auth.authorization_id, amount_minor=900,
                    idempotency_key="c")
    first = p.refund(capture_id=cap.capture_id, amount_minor=400, idempotency_key="r1")
    assert p.refund(capture_id=cap.capture_id, amount_minor=400, idempotency_key="r1") == first
    with pytest.raises(PaymentError):
        p.refund(capture_id=cap.capture_id, amount_minor=501, idempotency_key="r2")
    assert p.refund(capture_id=cap.capture_id, amount_minor=500,
                    idempotency_key="r3").amount_minor == 500
    with pytest.raises(PaymentError):
        p.refund(capture_id="sim_cap_missing", amount_minor=1, idempotency_key="r4")


def test_void_then_capture_is_refused_and_void_of_capture_too() -> None:
    p = SimulatedProcessor(seed=1, decline_rate=0.0)
    a = p.authorize(token="tok", amount_minor=100, currency="GBP", idempotency_key="a")
    p.void(authorization_id=a.authorization_id, idempotency_key="v")
    with pytest.raises(PaymentError):
        p.capture(authorization_id=a.authorization_id, amount_minor=100, idempotency_key="c")
    b = p.authorize(token="tok", amount_minor=100, currency="GBP", idempotency_key="b")
    p.capture(authorization_id=b.authorization_id, amount_minor=100, idempotency_key="cb")
    with pytest.raises(PaymentError):
        p.void(authorization_id=b.authorization_id, idempotency_key="vb")


def test_retry_looks_up_before_repeating_and_is_bounded() -> None:
    calls: list[str] = []
    answers = iter([ProcessorTimeout("lost"), ProcessorUnavailable("503")])

    def call() -> str:
        calls.append("call")
        error = next(answers, None)
        if error is not None:
            raise error
        return "done"

    def lookup() -> str | None:
        calls.append("lookup")
        return None

    assert call_with_retry(call, lookup=lookup, policy=RetryPolicy(attempts=3, wait_s=0)) \
        == "done"
    assert calls == ["call", "lookup", "call", "lookup", "call"]

    def always_down() -> str:
        raise ProcessorUnavailable("503")

    with pytest.raises(ProcessorUnavailable):
        call_with_retry(always_down, lookup=lambda: None,
                        policy=RetryPolicy(attempts=2, wait_s=0))


def test_retry_stops_at_a_found_result_and_never_retries_refusals() -> None:
    sent: list[int] = []

    def timed_out() -> str:
        sent.append(1)
        raise ProcessorTimeout("lost")

    assert call_with_retry(timed_out, lookup=lambda: "it happened",
                           policy=RetryPolicy(attempts=5, wait_s=0)) == "it happened"
    assert sent == [1]

    def refused() -> str:
        sent.append(2)
        raise PaymentError("card expired")

    with pytest.raises(PaymentError):
        call_with_retry(refused, lookup=lambda: None, policy=RetryPolicy(attempts=5, wait_s=0))
    assert sent == [1, 2]


def test_bad_plans_and_policies_refused() -> None:
    with pytest.raises(ValueError):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError):
        FaultPlan(rate=0.1, decline=0, timeout_before=0, timeout_after=0, server_error=0)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
