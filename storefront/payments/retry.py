"""Bounded retries of processor calls (tenacity) that reuse the idempotency key.

A transient failure (ProcessorUnavailable: timeout, 5xx) may hide a success, so
before each retry the processor is asked whether the call already took effect
(``lookup``); only when it did not is the call repeated, with the same key.
Permanent refusals (PaymentError) are not retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from storefront.payments.base import ProcessorUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` calls at most (>= 1), waiting ``wait_s`` x 2^n (capped at ``max_wait_s``)
    seconds between them."""

    attempts: int = 4
    wait_s: float = 0.05
    max_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.wait_s < 0 or self.max_wait_s < 0:
            raise ValueError("attempts must be >= 1 and waits >= 0")

    def total_wait_s(self) -> float:
        """Seconds slept between the attempts when every one fails: tenacity's
        ``wait_exponential`` sleeps ``min(wait_s * 2^(n-1), max_wait_s)`` after attempt n,
        for n = 1 .. attempts - 1 (none after the last)."""
        return float(sum(min(self.wait_s * 2 ** (n - 1), self.max_wait_s)
                         for n in range(1, self.attempts)))


def longest_call_s(policy: RetryPolicy, *, request_s: float, requests_per_call: int = 1,
                   transient_failures: bool = True) -> float:
    """Upper bound, in seconds, on how long :func:`call_with_retry` runs one call.

    Every attempt but the first is preceded by a look-up, so the call makes at most
    ``2 x attempts - 1`` processor requests-of-a-method (``attempts`` calls and
    ``attempts - 1`` look-ups), each up to ``requests_per_call`` HTTP requests of up to
    ``request_s`` seconds, plus the waits between attempts (:meth:`RetryPolicy.total_wait_s`).
    ``transient_failures`` False: the processor cannot fail transiently (the simulated one
    without injected faults), so there is no retry: one call. ``request_s`` is the
    nominal limit of one request (for Stripe the HTTP client's timeout, which bounds the
    connect and each read, not their sum). Pure; raises ValueError for a negative
    ``request_s`` or ``requests_per_call`` < 1.
    """
    if request_s < 0 or requests_per_call < 1:
        raise ValueError("request_s must be >= 0 and requests_per_call >= 1")
    per_method = request_s * requests_per_call
    if not transient_failures:
        return per_method
    return (2 * policy.attempts - 1) * per_method + policy.total_wait_s()


def call_with_retry(call: Callable[[], T], *, lookup: Callable[[], T | None],
                    policy: RetryPolicy) -> T:
    """``call()``; after a transient failure, ``lookup()`` then (if None) ``call()`` again.

    Raises the last ProcessorUnavailable once ``policy.attempts`` are used up, or
    the PaymentError of a permanent refusal at once.
    """
    retrying = Retrying(stop=stop_after_attempt(policy.attempts),
                        wait=wait_exponential(multiplier=policy.wait_s, max=policy.max_wait_s),
                        retry=retry_if_exception_type(ProcessorUnavailable), reraise=True)
    for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                found = lookup()
                if found is not None:
                    return found
            return call()
    raise AssertionError("unreachable: tenacity reraises the last error")


def resume_or_call(call: Callable[[], T], *, lookup: Callable[[], T | None],
                   policy: RetryPolicy, resumed: bool) -> T:
    """:func:`call_with_retry` of ``call``, preceded, when ``resumed`` (an earlier attempt
    may have sent the call and lost its answer), by ``lookup()`` with retries of its own:
    what the processor already did is returned instead of calling again.

    Raises as :func:`call_with_retry` (of the look-up or of the call).
    """
    found = call_with_retry(lookup, lookup=lookup, policy=policy) if resumed else None
    return found if found is not None else call_with_retry(call, lookup=lookup, policy=policy)
