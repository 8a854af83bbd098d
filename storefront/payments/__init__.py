"""Payments: the ``PaymentProcessor`` port, the simulated and Stripe processors, the
journal of processor calls, bounded retries, and reconciliation after a crash.

``from storefront.payments import PaymentProcessor, SimulatedProcessor, Refund`` is
the public surface; see ``base`` for the protocol.
"""

from storefront.payments.base import (
    Authorization,
    AuthorizationStatus,
    Capture,
    Operation,
    OperationKind,
    PaymentPending,
    PaymentProcessor,
    ProcessorTimeout,
    ProcessorUnavailable,
    Refund,
)
from storefront.payments.retry import RetryPolicy, call_with_retry
from storefront.payments.simulated import FaultPlan, SimulatedProcessor

__all__ = [
    "Authorization",
    "AuthorizationStatus",
    "Capture",
    "FaultPlan",
    "Operation",
    "OperationKind",
    "PaymentPending",
    "PaymentProcessor",
    "ProcessorTimeout",
    "ProcessorUnavailable",
    "Refund",
    "RetryPolicy",
    "SimulatedProcessor",
    "call_with_retry",
]
