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
