"""The demo's simulated store-day clock.

The demo plays a whole day in seconds, so the services run on a clock the demo
sets: each shopper enters at their own time of day, and the service sees a
cart's events only after the sensors recorded them (the cart refuses sensor
times ahead of the service clock). The day lies wholly in the past.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

ENTRY_SPACING = timedelta(seconds=90)  # one shopper enters every 90 s of store time


class DemoClock:
    """A settable, thread-safe UTC clock (a :data:`storefront.clock.Clock`)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the demo clock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        """The current store time."""
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Move the clock to ``when`` (a shopper's own timeline; may go back between
        shoppers, whose visits overlap in store time)."""
        with self._lock:
            self._now = when.astimezone(UTC)


def day_start(shoppers: int, now: datetime | None = None) -> datetime:
    """When the store day began: early enough that it ends before ``now``."""
    now = now or datetime.now(UTC)
    return now - shoppers * ENTRY_SPACING - timedelta(hours=2)
