"""A settable clock for tests (tz-aware UTC). Importable by any test module (``tests/`` is
on the import path through the root conftest)."""

from __future__ import annotations

from datetime import UTC, datetime


class FakeClock:
    """Returns ``now``, which the test moves; starts at 2026-05-04 10:00 UTC."""

    def __init__(self, start: datetime = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now
