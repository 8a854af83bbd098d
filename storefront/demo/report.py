"""The demo's report: counts and latency percentiles (ms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def percentile_ms(samples: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``samples`` (ms), rounded to 0.01 ms; None when empty."""
    if not samples:
        return None
    return round(float(np.percentile(np.asarray(samples, dtype=np.float64), q)), 2)


@dataclass
class DayReport:
    """Running totals of one store day; :meth:`as_dict` gives the JSON report."""

    shoppers: int = 0
    enrolled: int = 0
    enrolment_failures: int = 0
    entered: int = 0
    identified_correctly: int = 0
    misidentified: int = 0
    not_identified: int = 0
    ambiguous: int = 0
    sessions_paid: int = 0
    sessions_to_staffed_checkout: int = 0
    receipts: int = 0
    receipts_matching_expected: int = 0
    staffed_carts_priced: int = 0
    staffed_carts_matching_expected: int = 0
    events_sent: int = 0
    events_ingested: int = 0
    duplicate_events_ignored: int = 0
    identify_ms: list[float] = field(default_factory=list)
    exit_ms: list[float] = field(default_factory=list)
    staffed_reasons: dict[str, int] = field(default_factory=dict)
    enrolment_failure_reasons: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        out = {k: v for k, v in vars(self).items()
               if k not in ("identify_ms", "exit_ms", "extra")}
        out["identify_ms_p50"] = percentile_ms(self.identify_ms, 50)
        out["identify_ms_p99"] = percentile_ms(self.identify_ms, 99)
        out["exit_to_receipt_ms_p50"] = percentile_ms(self.exit_ms, 50)
        out["exit_to_receipt_ms_p99"] = percentile_ms(self.exit_ms, 99)
        out.update(self.extra)
        return out
