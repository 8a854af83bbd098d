"""A processor for tests whose issuer refuses some cards (shared by the e2e and browser
tests: sessions reach the staffed checkout through the real exit flow)."""

from __future__ import annotations

from typing import Any

from storefront.errors import PaymentError
from storefront.payments import SimulatedProcessor


class CardRefused:
    """The simulated processor, except that the issuer refuses the cards in ``refused``:
    captures and hold changes on their holds raise PaymentError, so the exit of such a
    shopper's session goes to the staffed checkout. Refunds are logged in ``refunds``
    (minor units)."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        self.inner = inner
        self.refused: set[str] = set()
        self.refunds: list[int] = []
        self._token_of: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def authorize(self, **kw: Any) -> Any:
        """Authorize through the simulated processor, remembering the card token."""
        auth = self.inner.authorize(**kw)
        self._token_of[auth.authorization_id] = kw["token"]
        return auth

    def _check(self, authorization_id: str) -> None:
        if self._token_of.get(authorization_id) in self.refused:
            raise PaymentError("card refused by the issuer (test)")

    def adjust(self, **kw: Any) -> Any:
        """Change a hold; raises PaymentError for a refused card."""
        self._check(kw["authorization_id"])
        return self.inner.adjust(**kw)

    def capture(self, **kw: Any) -> Any:
        """Capture a hold; raises PaymentError for a refused card."""
        self._check(kw["authorization_id"])
        return self.inner.capture(**kw)

    def refund(self, **kw: Any) -> Any:
        """Refund through the simulated processor, logging the amount."""
        self.refunds.append(kw["amount_minor"])
        return self.inner.refund(**kw)
