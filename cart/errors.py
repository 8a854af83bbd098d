"""Typed errors raised by the cart package.

Every error carries a short machine-readable ``code`` and a human-readable
``reason``; the storefront maps them to HTTP status codes in one table.
"""

from __future__ import annotations


class CartError(Exception):
    """Base class of every error raised by :mod:`cart`."""

    code = "cart_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionNotFound(CartError):
    """No event has ever been recorded for ``session_id``."""

    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no shopping session {session_id!r}")
        self.session_id = session_id


class SessionClosed(CartError):
    """An item event arrived for a session that no longer accepts items.

    ``status`` is the session's status value (``"exited"``, ``"settled"`` or
    ``"staffed"``).
    """

    code = "session_closed"

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(f"session {session_id!r} is {status}; item events are refused")
        self.session_id = session_id
        self.status = status


class InvalidCommand(CartError):
    """A command, event or serialised event is malformed or not allowed in this state."""

    code = "invalid_command"


class DuplicateDeviceEvent(CartError):
    """An item event with this (device id, device sequence) is already recorded.

    ``same_payload`` is True for a true replay (the stored event is identical, so the
    caller may acknowledge it) and False for a conflicting reuse of the sequence number
    (a device bug worth alerting on).
    """

    code = "duplicate_device_event"

    def __init__(self, device_id: str, device_seq: int, same_payload: bool) -> None:
        kind = "replay" if same_payload else "conflicting reuse"
        super().__init__(f"device {device_id!r} sequence {device_seq} already recorded ({kind})")
        self.device_id = device_id
        self.device_seq = device_seq
        self.same_payload = same_payload


class ConcurrencyConflict(CartError):
    """The session's current version differs from the version the writer expected.

    ``actual_version`` is the version seen when the conflict was detected, or None
    when the database refused the write without telling it.
    """

    code = "concurrency_conflict"

    def __init__(self, session_id: str, expected_version: int, actual_version: int | None) -> None:
        super().__init__(
            f"session {session_id!r}: expected version {expected_version}, "
            f"found {actual_version if actual_version is not None else 'a newer one'}"
        )
        self.session_id = session_id
        self.expected_version = expected_version
        self.actual_version = actual_version
