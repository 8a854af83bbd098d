"""Typed errors raised by the device-side :mod:`hardware` package.

Every error carries a short machine-readable ``code`` and a human-readable
``reason``; the storefront maps them to HTTP status codes in one table.
"""

from __future__ import annotations


class HardwareError(Exception):
    """Base class of every error raised by :mod:`hardware`."""

    code = "hardware_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(HardwareError):
    """A device message or topic is malformed, oversized or of an unknown type/version.

    ``reason`` says what is wrong, precisely enough to log or dead-letter it.
    """

    code = "invalid_message"


class AuthenticationFailed(HardwareError):
    """A signed frame failed authentication: its HMAC does not match the device's key.

    The message may be forged, altered in transit, or sent to another device's topic.
    """

    code = "bad_signature"


class StaleMessage(HardwareError):
    """A signed frame's timestamp lies outside the replay window around the receiver's clock."""

    code = "outside_replay_window"


class ReplayedMessage(HardwareError):
    """A signed frame's nonce was already seen inside the replay window (a replay or a resend)."""

    code = "replayed_nonce"
