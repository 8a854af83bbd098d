"""Review items: weight changes a person must look at instead of the bill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cart.shelf.planogram import ShelfId


class ReviewReason(StrEnum):
    """Why a change was not turned into a pick or put-back."""

    UNEXPLAINED = "unexplained"
    """No combination of the products on those plates (nor one misplaced unit) fits."""
    AMBIGUOUS = "ambiguous"
    """Two or more combinations fit within tolerance; the best has low confidence."""
    UNKNOWN_WEIGHT = "unknown_weight"
    """Nothing fits, and a product on those plates has no known unit weight."""
    NOT_BILLED = "not_billed"
    """A put-back of units the receipt does not hold (their pick is under review, or was not
    seen): crediting it would bill a negative quantity."""
    TRANSIENT = "transient"
    """A change that fits products was undone soon after by one that fits others (a resting
    hand, or a pick of one product and a put-back of a similar one), or by one that fits the
    same products while one of the two could not be billed."""


@dataclass(frozen=True)
class ReviewItem:
    """One change for staff: where, when, how many grams, why, and the candidate combinations.

    ``candidates``: explanations within tolerance, best first, as ((gtin, quantity), ...);
    ``confidence``: posterior of the best candidate (0 when none fits).
    """

    shelf: ShelfId
    plates: tuple[int, ...]
    time: datetime
    delta_g: float
    reason: ReviewReason
    candidates: tuple[tuple[tuple[str, int], ...], ...]
    confidence: float
