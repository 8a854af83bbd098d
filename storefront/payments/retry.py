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
