"""Evaluating one promotion against what is left of a cart (pure functions, no I/O).

Mix and match: a promotion's ``codes`` form one pool, so "any 3 of these for
10" counts units of different products together. When the units in a pool have
different prices, they are ranked most expensive first (ties by code) and
bundled in that order, which gives the shopper the larger saving; in "buy X get
Y" the cheapest units of each group are the discounted ones, as tills do.

The ranked units are handled as runs (one per product: code, price, count), never
one by one, so evaluating a promotion costs time in the number of products it
covers, not in the number of units in the cart (a cart's units are unbounded).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storefront.pricing.model import (
    FULL_RATE_BP,
    GRAMS_PER_KG,
    MILLI_PER_UNIT,
    Promotion,
    PromotionKind,
)
from storefront.pricing.rounding import allocate, round_half_up


@dataclass(frozen=True)
class PoolLine:
    """What is left of one cart line for promotions.

    ``quantity`` is units, or grams when ``sold_by_weight`` (a weighed line is
    used whole or not at all); ``unit_price_minor`` is per unit or per kg.
    """

    code: str
    unit_price_minor: int
    quantity: int
    sold_by_weight: bool

    @property
    def milli(self) -> int:
        """Milli-quantity: units x 1000, or grams."""
        return self.quantity if self.sold_by_weight else self.quantity * MILLI_PER_UNIT

    def regular_minor(self, quantity: int | None = None) -> int:
        """Regular price of ``quantity`` (default: all of it), minor units."""
        qty = self.quantity if quantity is None else quantity
        if self.sold_by_weight:
            return round_half_up(self.unit_price_minor * qty, GRAMS_PER_KG)
        return self.unit_price_minor * qty


@dataclass(frozen=True)
class Application:
    """A promotion evaluated on a pool: the saving, its split and what it uses up."""

    promotion: Promotion
    saving_minor: int
    savings_by_code: dict[str, int]
    consumed: dict[str, int]


def evaluate(promo: Promotion, pool: Iterable[PoolLine]) -> Application | None:
    """The best use of ``promo`` on ``pool``, or None when it saves nothing."""
    lines = sorted((line for line in pool if line.code in promo.codes and line.quantity > 0),
                   key=lambda line: line.code)
    if promo.kind is PromotionKind.BUY_X_GET_Y:
        lines = [line for line in lines if not line.sold_by_weight]
    if promo.kind is PromotionKind.MULTI_BUY and (promo.bundle_milli or 0) % MILLI_PER_UNIT:
        lines = [line for line in lines if line.sold_by_weight]
    if not lines or sum(line.milli for line in lines) < max(promo.min_quantity_milli, 1):
        return None
    savings, consumed = _EVALUATORS[promo.kind](promo, lines)
    savings = {code: amount for code, amount in savings.items() if amount > 0}
    total = sum(savings.values())
    if total <= 0:
        return None
    return Application(promo, total, savings, consumed)


_Result = tuple[dict[str, int], dict[str, int]]


def _fixed_price(promo: Promotion, lines: list[PoolLine]) -> _Result:
    price = promo.price_minor or 0
    savings: dict[str, int] = {}
    consumed: dict[str, int] = {}
    for line in lines:
        if line.sold_by_weight:
            promoted = round_half_up(price * line.quantity, GRAMS_PER_KG)
        else:
            promoted = price * line.quantity
        saving = line.regular_minor() - promoted
        if saving > 0:
            savings[line.code] = saving
            consumed[line.code] = line.quantity
    return savings, consumed


def _multi_buy(promo: Promotion, lines: list[PoolLine]) -> _Result:
    """Savings and units used (code -> minor units, code -> units or grams) of a
    multi-buy: weighed lines prorated, units bundled in price rank while a bundle saves."""
    price, bundle = promo.price_minor or 0, promo.bundle_milli or 1
    savings: dict[str, int] = {}
    consumed: dict[str, int] = {}
    for line in (line for line in lines if line.sold_by_weight and line.quantity >= bundle):
        # A weighed bundle ("1.5 kg for 43.50") is a price per kg: prorate it.
        saving = line.regular_minor() - round_half_up(price * line.quantity, bundle)
        if saving > 0:
            savings[line.code], consumed[line.code] = saving, line.quantity
    size = bundle // MILLI_PER_UNIT
    if size == 0:  # a bundle under one unit ("200 g for 30") only fits weighed goods
        return savings, consumed
    for group, repeat in _groups(_runs(lines), size):
        saving = sum(unit_price * count for _, unit_price, count in group) - price
        if saving <= 0:
            break  # units are ranked by price, so later groups save even less
        parts = allocate(saving, [(code, unit_price * count) for code, unit_price, count in group])
        _add(savings, {code: amount * repeat for code, amount in parts.items()})
        _add(consumed, {code: count * repeat for code, _, count in group})
    return savings, consumed


def _percent_off(promo: Promotion, lines: list[PoolLine]) -> _Result:
    regular = [(line.code, line.regular_minor()) for line in lines]
    saving = round_half_up(sum(value for _, value in regular) * (promo.rate_bp or 0),
                           FULL_RATE_BP)
    if saving <= 0:
        return {}, {}
    return allocate(saving, regular), {line.code: line.quantity for line in lines}


def _buy_x_get_y(promo: Promotion, lines: list[PoolLine]) -> _Result:
    """Savings and units used (code -> minor units, code -> units) of "buy X get Y":
    complete groups of X + Y units in price rank, the last Y of each discounted."""
    buy, step = promo.buy_units or 1, (promo.buy_units or 1) + (promo.get_units or 1)
    runs = _runs(lines)
    end = sum(count for _, _, count in runs) // step * step  # units in complete groups
    discounted: list[tuple[str, int]] = []
    consumed: dict[str, int] = {}
    start = 0
    for code, unit_price, count in runs:
        stop = min(start + count, end)
        if stop <= start:
            break
        consumed[code] = stop - start
        # ranked by price: in each group the last ``get`` units are the cheapest
        free = _discounted_before(stop, buy, step) - _discounted_before(start, buy, step)
        if free:
            discounted.append((code, unit_price * free))
        start = stop
    if not discounted:
        return {}, {}
    saving = round_half_up(sum(price for _, price in discounted) * (promo.rate_bp or 0),
                           FULL_RATE_BP)
    if saving <= 0:
        return {}, {}
    return allocate(saving, discounted), consumed


_Run = tuple[str, int, int]
"""Units of one product in price rank: (code, unit price in minor units, unit count)."""


def _runs(lines: list[PoolLine]) -> list[_Run]:
    """The units of the unit-priced ``lines``, most expensive first (ties by code), as
    runs of one code each: one entry per line, so the cost is in lines, not units."""
    runs = [(line.code, line.unit_price_minor, line.quantity) for line in lines
            if not line.sold_by_weight and line.quantity > 0]
    return sorted(runs, key=lambda run: (-run[1], run[0]))


def _groups(runs: list[_Run], size: int) -> Iterator[tuple[list[_Run], int]]:
    """Consecutive groups of ``size`` units along ``runs`` (complete groups only).

    Yields ``(group, repeat)``: ``group`` lists the (code, unit price, count) making
    up one group, and ``repeat`` identical groups follow one another there. A run
    holding many groups yields once, so the steps are at most twice the runs.
    """
    index, left = 0, runs[0][2] if runs else 0
    while index < len(runs):
        code, unit_price, _ = runs[index]
        if left >= size:
            yield [(code, unit_price, size)], left // size
            left %= size
        if left == 0:
            index, left = index + 1, runs[index + 1][2] if index + 1 < len(runs) else 0
            continue
        group, index, left = _straddling(runs, size, index, left)
        if sum(count for _, _, count in group) < size:
            return
        yield group, 1


def _straddling(runs: list[_Run], size: int, index: int, left: int
                ) -> tuple[list[_Run], int, int]:
    """The group of ``size`` units starting with the ``left`` last units of
    ``runs[index]`` and taking the next runs' units (fewer units when they run out).

    Returns the group and the position after it: (run index, units left in that run).
    """
    group: list[_Run] = []
    need = size
    while need and index < len(runs):
        code, unit_price, _ = runs[index]
        take = min(left, need)
        group.append((code, unit_price, take))
        need, left = need - take, left - take
        if left == 0:
            index += 1
            left = runs[index][2] if index < len(runs) else 0
    return group, index, left


def _discounted_before(position: int, buy: int, step: int) -> int:
    """How many of the first ``position`` ranked units are discounted when every
    group of ``step`` units discounts the units after its first ``buy``."""
    return position // step * (step - buy) + max(0, position % step - buy)


def _add(target: dict[str, int], parts: dict[str, int]) -> None:
    for code, amount in parts.items():
        target[code] = target.get(code, 0) + amount


_EVALUATORS = {
    PromotionKind.FIXED_PRICE: _fixed_price,
    PromotionKind.MULTI_BUY: _multi_buy,
    PromotionKind.PERCENT_OFF: _percent_off,
    PromotionKind.BUY_X_GET_Y: _buy_x_get_y,
}
