"""Evaluating one promotion against what is left of a cart (pure functions, no I/O).

Mix and match: a promotion's ``codes`` form one pool, so "any 3 of these for
10" counts units of different products together. When the units in a pool have
different prices, they are ranked most expensive first (ties by code) and
bundled in that order, which gives the shopper the larger saving; in "buy X get
Y" the cheapest units of each group are the discounted ones, as tills do.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    units = _units([line for line in lines if not line.sold_by_weight])
    for start in range(0, len(units) - size + 1, size):
        group = units[start:start + size]
        saving = sum(unit_price for _, unit_price in group) - price
        if saving <= 0:
            break  # units are ranked by price, so later groups save even less
        _add(savings, allocate(saving, group))
        _add(consumed, _count(group))
    return savings, consumed


def _percent_off(promo: Promotion, lines: list[PoolLine]) -> _Result:
    regular = [(line.code, line.regular_minor()) for line in lines]
    saving = round_half_up(sum(value for _, value in regular) * (promo.rate_bp or 0),
                           FULL_RATE_BP)
    if saving <= 0:
        return {}, {}
    return allocate(saving, regular), {line.code: line.quantity for line in lines}


def _buy_x_get_y(promo: Promotion, lines: list[PoolLine]) -> _Result:
    buy, get = promo.buy_units or 1, promo.get_units or 1
    units = _units(lines)
    discounted: list[tuple[str, int]] = []
    consumed: dict[str, int] = {}
    for start in range(0, len(units) - buy - get + 1, buy + get):
        group = units[start:start + buy + get]
        discounted.extend(group[buy:])  # ranked by price: the last ``get`` are the cheapest
        _add(consumed, _count(group))
    if not discounted:
        return {}, {}
    saving = round_half_up(sum(price for _, price in discounted) * (promo.rate_bp or 0),
                           FULL_RATE_BP)
    if saving <= 0:
        return {}, {}
    return allocate(saving, discounted), consumed


def _units(lines: list[PoolLine]) -> list[tuple[str, int]]:
    """Every unit as (code, price), most expensive first, ties by code."""
    units = [(line.code, line.unit_price_minor) for line in lines for _ in range(line.quantity)]
    return sorted(units, key=lambda unit: (-unit[1], unit[0]))


def _count(group: list[tuple[str, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for code, _ in group:
        counts[code] = counts.get(code, 0) + 1
    return counts


def _add(target: dict[str, int], parts: dict[str, int]) -> None:
    for code, amount in parts.items():
        target[code] = target.get(code, 0) + amount


_EVALUATORS = {
    PromotionKind.FIXED_PRICE: _fixed_price,
    PromotionKind.MULTI_BUY: _multi_buy,
    PromotionKind.PERCENT_OFF: _percent_off,
    PromotionKind.BUY_X_GET_Y: _buy_x_get_y,
}
