"""Follow-ups of the payment journal audit (issue 6), pure logic: the exit lease and the
reconciliation grace must outlast the longest processor call (settings), and Stripe's
"another request with this idempotency key is in progress" is an unknown outcome, not a
refusal (``_translate``, through the real ``stripe`` library with a fake HTTP client)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import stripe
from pydantic import ValidationError

from storefront.errors import PaymentError, StorefrontError
from storefront.payments.base import Operation, ProcessorUnavailable
from storefront.payments.retry import RetryPolicy, call_with_retry, longest_call_s
from storefront.payments.stripe_adapter import IdempotencyKeyMisuse, StripeProcessor
from storefront.settings import Settings


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Settings from the arguments only: no STOREFRONT_* variables, no .env file."""
    import os

    for name in list(os.environ):
        if name.startswith("STOREFRONT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# --- longest call --------------------------------------------------------------------


def test_total_wait_follows_tenacity_exponential_capped() -> None:
    # Sleeps after attempts 1..3 of 4: 0.05, 0.1, 0.2 (tenacity wait_exponential).
    assert RetryPolicy(attempts=4).total_wait_s() == pytest.approx(0.35)
    # Capped at max_wait_s: 0.5, 1, 1, 1.
    assert RetryPolicy(attempts=5, wait_s=0.5, max_wait_s=1.0).total_wait_s() \
        == pytest.approx(3.5)
    assert RetryPolicy(attempts=1).total_wait_s() == 0


def test_longest_call_counts_calls_lookups_requests_and_waits() -> None:
    policy = RetryPolicy(attempts=4)
    # 4 calls + 3 look-ups, 2 requests of 10 s each, plus 0.35 s of waits.
    assert longest_call_s(policy, request_s=10.0, requests_per_call=2) == pytest.approx(140.35)
    assert longest_call_s(policy, request_s=10.0) == pytest.approx(70.35)
    # A processor that cannot fail transiently is called once.
    assert longest_call_s(policy, request_s=0.2, transient_failures=False) == 0.2
    with pytest.raises(ValueError):
        longest_call_s(policy, request_s=-1.0)
    with pytest.raises(ValueError):
        longest_call_s(policy, request_s=1.0, requests_per_call=0)


def test_longest_call_bounds_a_run_of_call_with_retry() -> None:
    """Every attempt fails: call_with_retry makes exactly the calls and look-ups counted."""
    policy = RetryPolicy(attempts=3, wait_s=0)
    made: list[str] = []

    def call() -> str:
        made.append("call")
        raise ProcessorUnavailable("down")

    def lookup() -> str | None:
        made.append("lookup")
        return None

    with pytest.raises(ProcessorUnavailable):
        call_with_retry(call, lookup=lookup, policy=policy)
    assert len(made) == 2 * policy.attempts - 1
    assert longest_call_s(policy, request_s=1.0) == len(made)


# --- settings ------------------------------------------------------------------------


def test_default_settings_are_valid_for_either_processor() -> None:
    simulated = Settings()
    assert simulated.exit_lease_s > simulated.longest_payment_call_s()
    assert simulated.payment_reconcile_after_s > simulated.longest_payment_call_s()
    stripe_settings = Settings(payment_processor="stripe")
    assert stripe_settings.longest_payment_call_s() == pytest.approx(140.35)
    assert stripe_settings.exit_lease_s > 140.35
    assert stripe_settings.payment_reconcile_after_s > 140.35


@pytest.mark.parametrize("name", ["exit_lease_s", "payment_reconcile_after_s"])
def test_a_window_a_call_can_outlast_is_refused_naming_the_settings(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(payment_processor="stripe", **{name: 60.0})
    message = str(caught.value)
    assert name in message and "payment_timeout_s=10" in message
    assert "payment_retry_attempts=4" in message and "140.35" in message


def test_fewer_retries_or_a_shorter_timeout_make_a_short_window_valid() -> None:
    # 3 attempts x 2 requests x 2 s: 5 methods x 4 s + 0.15 s = 20.15 s.
    s = Settings(payment_processor="stripe", payment_retry_attempts=3, payment_timeout_s=2.0,
                 exit_lease_s=21.0, payment_reconcile_after_s=30.0)
    assert s.longest_payment_call_s() == pytest.approx(20.15)
    with pytest.raises(ValidationError, match="exit_lease_s=20"):
        Settings(payment_processor="stripe", payment_retry_attempts=3,
                 payment_timeout_s=2.0, exit_lease_s=20.0)


def test_simulated_processor_bound_uses_its_latency_and_faults() -> None:
    # No faults: one call of the simulated latency; faults: 7 calls and look-ups + waits.
    assert Settings(payment_sim_latency_ms=400).longest_payment_call_s() == pytest.approx(0.4)
    faulty = Settings(payment_sim_latency_ms=400, payment_fault_rate=0.1)
    assert faulty.longest_payment_call_s() == pytest.approx(7 * 0.4 + 0.35)
    with pytest.raises(ValidationError, match="exit_lease_s"):
        Settings(payment_sim_latency_ms=400, payment_fault_rate=0.1, exit_lease_s=3.0)


def test_zero_reconcile_grace_stays_possible_for_a_single_process() -> None:
    # benchmarks/chaos_checkout.py: one service process, faults on, lease 3 s, grace 0.
    s = Settings(payment_fault_rate=0.3, exit_lease_s=3.0, payment_reconcile_after_s=0.0)
    assert s.payment_reconcile_after_s == 0.0
    # Any other grace below the longest call is refused.
    with pytest.raises(ValidationError, match="single service process"):
        Settings(payment_processor="stripe", payment_reconcile_after_s=0.5)


def test_settings_read_from_the_environment_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_PAYMENT_PROCESSOR", "stripe")
    monkeypatch.setenv("STOREFRONT_EXIT_LEASE_S", "30")
    with pytest.raises(ValidationError, match="STOREFRONT_EXIT_LEASE_S"):
        Settings()


# --- Stripe: idempotency errors ---------------------------------------------------------


class FakeHttp(stripe.HTTPClient):
    """Answers Stripe requests from a script: one (status, body) per request, in order;
    records (method, path, Idempotency-Key) of each request."""

    name = "fake"

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        super().__init__()
        self.answers: Iterator[tuple[int, dict[str, Any]]] = iter(answers)
        self.requests: list[tuple[str, str, str | None]] = []

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: Any = None) -> tuple[str, int,
                                                                        Mapping[str, str]]:
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        self.requests.append((method.upper(), "/" + path.split("?")[0],
                              (headers or {}).get("Idempotency-Key")))
        status, body = next(self.answers)
        return json.dumps(body), status, {"Request-Id": f"req_{len(self.requests)}"}

    def close(self) -> None:
        """Nothing to close."""


def _processor(monkeypatch: pytest.MonkeyPatch, http: FakeHttp) -> StripeProcessor:
    monkeypatch.setattr(stripe, "RequestsClient", lambda timeout: http)
    return StripeProcessor(api_key="sk_test_fake", api_base="http://stripe.invalid")


INTENT = {"id": "pi_1", "object": "payment_intent", "status": "requires_capture",
          "amount": 1200, "currency": "gbp", "metadata": {}}
CAPTURED = {**INTENT, "status": "succeeded", "amount_received": 1000}
KEY_IN_USE = {"error": {"type": "idempotency_error", "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using "
                                   "this Stripe-Idempotency-Key. Please try again later."}}
KEY_MISUSE = {"error": {"type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the "
                                   "same parameters they were first used with."}}


def test_409_key_in_progress_is_an_unknown_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    http = FakeHttp([(200, INTENT), (409, KEY_IN_USE)])
    processor = _processor(monkeypatch, http)
    with pytest.raises(ProcessorUnavailable, match="in progress"):
        processor.capture(authorization_id="pi_1", amount_minor=1000,
                          idempotency_key="ses_1:capture")
    assert http.requests[-1] == ("POST", "/v1/payment_intents/pi_1/capture", "ses_1:capture")


def test_key_in_use_code_is_transient_whatever_the_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The library makes an IdempotencyError of a 400 of type idempotency_error: with the
    in-use code it is still an unknown outcome, not a refusal."""
    http = FakeHttp([(200, INTENT), (400, KEY_IN_USE)])
    processor = _processor(monkeypatch, http)
    with pytest.raises(ProcessorUnavailable):
        processor.capture(authorization_id="pi_1", amount_minor=1000,
                          idempotency_key="ses_1:capture")


def test_key_reused_with_other_parameters_is_a_bug_not_a_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    http = FakeHttp([(200, INTENT), (400, KEY_MISUSE)])
    processor = _processor(monkeypatch, http)
    with pytest.raises(IdempotencyKeyMisuse) as caught:
        processor.capture(authorization_id="pi_1", amount_minor=1000,
                          idempotency_key="ses_1:capture")
    assert isinstance(caught.value.__cause__, stripe.IdempotencyError)
    assert isinstance(caught.value, StorefrontError)
    assert not isinstance(caught.value, PaymentError)  # never recorded as a refusal


def test_other_refusals_stay_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = {"error": {"type": "invalid_request_error", "code": "amount_too_large",
                         "message": "Amount to capture exceeds the authorized amount."}}
    http = FakeHttp([(200, INTENT), (400, refused), (200, INTENT)])  # re-read: not captured
    with pytest.raises(PaymentError) as caught:
        _processor(monkeypatch, http).capture(authorization_id="pi_1", amount_minor=5000,
                                              idempotency_key="ses_1:capture")
    assert not isinstance(caught.value, ProcessorUnavailable)


def test_capture_answered_409_then_found_by_lookup_counts_as_captured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As the journal runs it (call_with_retry): the 409 is retried after a look-up, which
    finds the capture the first request made: the capture succeeded, it did not fail."""
    http = FakeHttp([(200, INTENT), (409, KEY_IN_USE), (200, CAPTURED)])
    processor = _processor(monkeypatch, http)

    def capture() -> Operation | None:
        done = processor.capture(authorization_id="pi_1", amount_minor=1000,
                                 idempotency_key="ses_1:capture")
        return Operation("capture", done.capture_id, "succeeded", done.amount_minor)

    def lookup() -> Operation | None:
        return processor.lookup(kind="capture", idempotency_key="ses_1:capture",
                                reference="pi_1")

    found = call_with_retry(capture, lookup=lookup, policy=RetryPolicy(attempts=3, wait_s=0))
    assert isinstance(found, Operation)
    assert (found.kind, found.status, found.amount_minor) == ("capture", "succeeded", 1000)
    assert [r[0] for r in http.requests] == ["GET", "POST", "GET"]
