"""Typed errors of the storefront service layer.

Each error has a ``reason`` a person can read. ``storefront.api.errors`` maps
these (and the identity and cart errors) to HTTP status codes in one table.
"""

from __future__ import annotations


class StorefrontError(Exception):
    """Base class of storefront service errors."""

    code = "storefront_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(StorefrontError):
    """The shopper, session, product or receipt does not exist."""

    code = "not_found"


class UnknownProduct(StorefrontError):
    """A product code is not in the catalogue."""

    code = "unknown_product"


class InvalidInput(StorefrontError):
    """The request is well-formed but its content is unacceptable."""

    code = "invalid_input"


class Conflict(StorefrontError):
    """The request conflicts with stored state (replayed event, closed session)."""

    code = "conflict"


class Gone(StorefrontError):
    """The thing existed but is gone for good (e.g. an expired data export); answered 410."""

    code = "gone"


class EntryRefused(StorefrontError):
    """The gate refuses entry; ``reason`` is shown to the shopper."""

    code = "entry_refused"


class PaymentError(StorefrontError):
    """The payment processor failed or declined."""

    code = "payment_failed"


class KeyUnavailable(StorefrontError):
    """A secret stored by the server (a device key, a staff one-time-code secret) cannot be
    opened with the key-encryption keys this process can read: a server-side key problem
    (e.g. the KEK files changed under it), never the client's input. Answered 503."""

    code = "key_unavailable"
