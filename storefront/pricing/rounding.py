"""Rounding money to the minor unit, and splitting an amount over lines.

The rule is *round half up* (``decimal.ROUND_HALF_UP``: 0.5 agora -> 1 agora),
the usual commercial rounding; all arithmetic is exact (integers and Decimal),
never float.
"""

from __future__ import annotations

from collections.abc import Sequence

from storefront.errors import InvalidInput


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up to an integer (minor units).

    Raises:
        InvalidInput: ``denominator`` is not positive.
    """
    if denominator <= 0:
        raise InvalidInput("rounding needs a positive denominator")
    # Exact integer form of Decimal(numerator / denominator).quantize(1, ROUND_HALF_UP):
    # ties go away from zero. Integers avoid Decimal's 28-digit context limit.
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return magnitude if numerator >= 0 else -magnitude


def allocate(amount: int, weights: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split ``amount`` minor units over keys in proportion to non-negative ``weights``.

    Largest-remainder method (Hamilton): every key gets the floor of its share,
    the units left over go to the largest remainders, ties to the earlier key in
    sorted order. The parts always sum to ``amount``.

    Raises:
        InvalidInput: no weights, a negative weight, or all weights zero.
    """
    total = sum(weight for _, weight in weights)
    if not weights or total <= 0 or any(weight < 0 for _, weight in weights):
        raise InvalidInput("allocation needs non-negative weights with a positive sum")
    merged: dict[str, int] = {}
    for key, weight in weights:
        merged[key] = merged.get(key, 0) + weight
    shares = {key: divmod(amount * weight, total) for key, weight in merged.items()}
    parts = {key: share for key, (share, _) in shares.items()}
    left = amount - sum(parts.values())
    order = sorted(merged, key=lambda key: (-shares[key][1], key))
    for key in order[:left]:
        parts[key] += 1
    return parts
