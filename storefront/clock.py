"""The clock port: a callable returning timezone-aware UTC now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)
