"""The payment processor port: values, errors and the ``PaymentProcessor`` protocol.

Every call carries an idempotency key (as Stripe's ``Idempotency-Key`` header):
repeating a call with the same key must not move money twice. The service does
not rely on that alone: it journals each call before and after it is made and
asks the processor (``lookup``) what happened to a call whose answer was lost.
Money is integer minor units; card data appears only as processor tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from storefront.errors import PaymentError

AuthorizationStatus = Literal["authorized", "declined"]
OperationKind = Literal["authorize", "adjust", "capture", "void", "refund"]


class ProcessorUnavailable(PaymentError):
    """A transient failure (timeout, HTTP 5xx, connection refused): the call may be retried
    with the same idempotency key; whether it took effect is unknown until looked up."""

    code = "processor_unavailable"


class ProcessorTimeout(ProcessorUnavailable):
    """No answer in time; the processor may still have carried the call out."""

    code = "processor_timeout"


class PaymentPending(PaymentError):
    """A payment call's outcome is still unknown after bounded retries; retry the request
    later (the journal resumes it) or run ``storefront payments reconcile``."""

    code = "payment_pending"


@dataclass(frozen=True)
class Authorization:
    """Result of a hold: ``authorization_id`` is the processor's reference."""

    authorization_id: str
    status: AuthorizationStatus
    amount_minor: int
    currency: str
    decline_reason: str | None = None


@dataclass(frozen=True)
class Capture:
    """A completed capture of ``amount_minor`` (<= the authorized amount)."""

    capture_id: str
    authorization_id: str
    amount_minor: int


@dataclass(frozen=True)
class Refund:
    """A refund of ``amount_minor`` (<= captured minus already refunded) of one capture."""

    refund_id: str
    capture_id: str
    amount_minor: int


@dataclass(frozen=True)
class Operation:
    """What the processor reports about one earlier call (``lookup``).

    ``reference``: the authorization id (authorize, adjust, void), capture id
    (capture) or refund id (refund). ``status`` ``declined`` only for holds.
    """

    kind: OperationKind
    reference: str
    status: Literal["succeeded", "declined"]
    amount_minor: int
    reason: str | None = None


class PaymentProcessor(Protocol):
    """A card processor: hold, adjust, capture (<= held), void, refund, and look-up.

    Every call takes an idempotency key. Declines are results; other refusals
    raise PaymentError; transient failures raise ProcessorUnavailable (retry
    with the same key, or ``lookup`` first).
    """

    @property
    def supports_adjust(self) -> bool:
        """True when ``adjust`` can raise a hold in place (incremental authorization)."""
        ...

    @property
    def lookup_is_complete(self) -> bool:
        """True when ``lookup`` returning None proves the call never took effect (the
        processor keeps every call by its key and answers from it). False when a miss
        may only mean the search did not find it (e.g. an eventually consistent search
        API): then a miss must never be taken as "no money was taken"."""
        ...

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        """Place a hold; a decline is a result, not an exception."""
        ...

    def adjust(self, *, authorization_id: str, amount_minor: int,
               idempotency_key: str) -> Authorization:
        """Change a hold to ``amount_minor``; raises PaymentError when unsupported."""
        ...

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        """Capture up to the held amount; raises PaymentError otherwise."""
        ...

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        """Release an uncaptured hold."""
        ...

    def refund(self, *, capture_id: str, amount_minor: int, idempotency_key: str) -> Refund:
        """Refund part or all of a capture; raises PaymentError beyond what is left."""
        ...

    def lookup(self, *, kind: OperationKind, idempotency_key: str,
               reference: str | None) -> Operation | None:
        """What became of an earlier call: found by its key or by ``reference``
        (the authorization a capture, adjust or void acted on); None when it
        did not take effect."""
        ...
