"""Payment processing port and the seeded simulated processor.

Every call carries an idempotency key: repeating a call with the same key
returns the first result and never moves money twice (as with card processors'
idempotency keys). Card data appears only as processor tokens.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

from storefront.errors import PaymentError

AuthorizationStatus = Literal["authorized", "declined"]


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


class PaymentProcessor(Protocol):
    """A card processor: hold, capture (<= held), void. Every call is idempotent on its key."""

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        """Place a hold; a decline is a result, not an exception."""
        ...

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        """Capture up to the held amount; raises PaymentError otherwise."""
        ...

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        """Release an uncaptured hold."""
        ...


class SimulatedProcessor:
    """A deterministic in-memory processor with a configurable decline rate.

    Whether an authorization is declined depends only on ``seed``, the payment
    token and the amount (SHA-256), as an issuer's answer depends on the card and
    the sum: runs are reproducible whatever the call order or session ids.
    Thread-safe.
    """

    def __init__(self, *, seed: int, decline_rate: float) -> None:
        if not 0.0 <= decline_rate <= 1.0:
            raise ValueError("decline_rate must be within [0, 1]")
        self._seed = seed
        self._decline_rate = decline_rate
        self._lock = threading.Lock()
        self._auths: dict[str, Authorization] = {}
        self._by_key: dict[str, object] = {}
        self._captured: dict[str, int] = {}
        self._voided: set[str] = set()

    def _declines(self, key: str) -> bool:
        digest = hashlib.sha256(f"{self._seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self._decline_rate

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        """Hold ``amount_minor``; declined for a share ``decline_rate`` of keys."""
        if amount_minor < 0:
            raise PaymentError("amount must not be negative")
        if not token:
            raise PaymentError("no payment token on file")
        with self._lock:
            previous = self._by_key.get(idempotency_key)
            if isinstance(previous, Authorization):
                return previous
            auth_id = f"sim_auth_{len(self._auths) + 1:06d}"
            declined = self._declines(f"{token}:{amount_minor}")
            auth = Authorization(auth_id, "declined" if declined else "authorized",
                                 amount_minor, currency,
                                 "card declined by issuer (simulated)" if declined else None)
            self._auths[auth_id] = auth
            self._by_key[idempotency_key] = auth
            return auth

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        """Capture against an authorized, unvoided, uncaptured hold."""
        with self._lock:
            previous = self._by_key.get(idempotency_key)
            if isinstance(previous, Capture):
                return previous
            auth = self._auths.get(authorization_id)
            if auth is None or auth.status != "authorized":
                raise PaymentError(f"no usable authorization {authorization_id}")
            if authorization_id in self._voided or authorization_id in self._captured:
                raise PaymentError(f"authorization {authorization_id} is already closed")
            if not 0 <= amount_minor <= auth.amount_minor:
                raise PaymentError("capture exceeds the authorized amount")
            capture = Capture(f"sim_cap_{len(self._captured) + 1:06d}", authorization_id,
                              amount_minor)
            self._captured[authorization_id] = amount_minor
            self._by_key[idempotency_key] = capture
            return capture

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        """Release a hold; voiding twice is harmless, voiding a captured hold is an error."""
        with self._lock:
            if authorization_id in self._captured:
                raise PaymentError(f"authorization {authorization_id} was captured")
            self._voided.add(authorization_id)
            self._by_key[idempotency_key] = authorization_id

    def captured_total(self) -> int:
        """Sum of all captures in minor units (for reconciliation in tests and the demo)."""
        with self._lock:
            return sum(self._captured.values())
