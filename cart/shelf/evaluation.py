"""Scoring inferred shelf events against ground truth: receipts and (product, quantity) matches.

Matching is per trip, per (action, gtin): matched units = min(inferred units, true units), so
two units picked at once and annotated as two events of one unit still match. Precision =
matched / inferred units, recall = matched / true units (micro-averaged over trips).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

UNIDENTIFIED = "<unidentified>"
"""Receipt key of annotated units whose product is unknown (never produced by inference)."""

ActionItems = tuple[str, tuple[tuple[str, int], ...]]
"""(action value, ((gtin, quantity), ...)) of one event."""


def unit_counts(events: Iterable[ActionItems]) -> Counter[tuple[str, str]]:
    """Units per (action, gtin) over ``events``."""
    counts: Counter[tuple[str, str]] = Counter()
    for action, items in events:
        for gtin, quantity in items:
            counts[(action, gtin)] += quantity
    return counts


def receipt(events: Iterable[ActionItems], pick: str = "pick") -> dict[str, int]:
    """Net quantity per gtin (picks minus put-backs), zero lines dropped."""
    net: Counter[str] = Counter()
    for action, items in events:
        for gtin, quantity in items:
            net[gtin] += quantity if action == pick else -quantity
    return {gtin: q for gtin, q in sorted(net.items()) if q != 0}


def matched_units(
    truth: Mapping[tuple[str, str], int], inferred: Mapping[tuple[str, str], int]
) -> int:
    """Units matched between two (action, gtin) -> units maps."""
    return sum(min(q, inferred.get(key, 0)) for key, q in truth.items())


def precision_recall_f1(matched: int, n_inferred: int, n_truth: int) -> tuple[float, float, float]:
    """Precision, recall, F1 from unit counts (1.0 where the denominator is 0)."""
    precision = matched / n_inferred if n_inferred else 1.0
    recall = matched / n_truth if n_truth else 1.0
    total = precision + recall
    return precision, recall, (2 * precision * recall / total if total else 0.0)
