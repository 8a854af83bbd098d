"""The clock port: a callable returning timezone-aware UTC now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: Any) -> datetime:
    """A stored time as tz-aware UTC: SQL aggregates (``max(...)``) lose the column type,
    so SQLite hands back naive datetimes or ISO text; both were written in UTC."""
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
