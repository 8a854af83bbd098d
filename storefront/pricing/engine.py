"""Pricing a cart: regular prices, weighed goods, promotions, tax.

Promotion rule (deterministic): promotions that are valid on the pricing day
and open to the shopper are applied *best first*: the promotion that saves the
most on what is left of the cart is applied, the units (or weighed lines) it
uses are taken out, and the rest is evaluated again, until no promotion saves
anything. Ties go to the smaller promotion id. A unit is in at most one
promotion (no stacking: the Israeli files carry no stacking flag); products
marked ``allow_discount = False`` never take part in promotions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from storefront.catalog import CatalogueItem, not_on_sale_reason
from storefront.errors import InvalidInput
from storefront.pricing.model import (
    GRAMS_PER_KG,
    AppliedPromotion,
    PricedCart,
    PricedLine,
    Promotion,
    TaxPolicy,
)
from storefront.pricing.promotions import Application, PoolLine, evaluate
from storefront.pricing.rounding import round_half_up
from storefront.pricing.tax import receipt_taxes

DEFAULT_TAX_POLICY = TaxPolicy()


def line_regular_minor(item: CatalogueItem, quantity: int) -> int:
    """Regular price of ``quantity`` of ``item``: units x unit price, or grams x price/kg.

    Weighed goods: ``round_half_up(price_per_kg_minor * grams / 1000)``.
    """
    if item.sold_by_weight:
        return round_half_up(item.unit_price_minor * quantity, GRAMS_PER_KG)
    return item.unit_price_minor * quantity


def price_lines(lines: Mapping[str, int], items: Mapping[str, CatalogueItem], currency: str,
                *, promotions: Iterable[Promotion] = (),
                tax: TaxPolicy = DEFAULT_TAX_POLICY, club_member: bool = False,
                on: date | None = None) -> PricedCart:
    """Price ``lines`` (code -> quantity: units, or grams for weighed goods) with ``items``.

    Args:
        promotions: candidates; those not valid ``on`` (default: today, UTC) or
            club-only for a non-member are ignored.
        tax: whether shelf prices include tax, and the rates per category.

    Raises:
        InvalidInput: a quantity below 1, an item withdrawn from sale
            (``CatalogueItem.on_sale`` False: its price is another store's), an item in
            another currency, or an unknown tax category.
        KeyError: a code missing from ``items`` (callers look codes up first).
    """
    day = on or datetime.now(UTC).date()
    for code, quantity in lines.items():
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidInput(f"quantity of {code} must be an integer >= 1, got {quantity!r}")
        if not items[code].on_sale:
            raise InvalidInput(not_on_sale_reason(items[code]))
        if items[code].currency != currency:
            raise InvalidInput(f"{code} is priced in {items[code].currency}, "
                               f"the store in {currency}")
    active = sorted((promo for promo in promotions
                     if promo.is_active(on=day, club_member=club_member)),
                    key=lambda promo: promo.promotion_id)
    pool = {code: PoolLine(code, items[code].unit_price_minor, quantity,
                           items[code].sold_by_weight)
            for code, quantity in lines.items() if items[code].allow_discount}
    applied = _best_first(active, pool)
    discounts: dict[str, int] = {}
    for app in applied:
        for code, amount in app.savings_by_code.items():
            discounts[code] = discounts.get(code, 0) + amount
    priced = tuple(_line(items[code], lines[code], discounts.get(code, 0))
                   for code in sorted(lines))
    taxes = receipt_taxes(((line.tax_category, line.payable_minor) for line in priced), tax)
    total = sum(line.payable_minor for line in priced)
    if not tax.prices_include_tax:
        total += sum(line.tax_minor for line in taxes)
    promos = tuple(AppliedPromotion(app.promotion.promotion_id, app.promotion.description,
                                    app.saving_minor, tuple(sorted(app.savings_by_code.items())))
                   for app in applied)
    return PricedCart(priced, total, currency, promos, taxes, tax.prices_include_tax)


def _best_first(active: list[Promotion], pool: dict[str, PoolLine]) -> list[Application]:
    """Apply ``active`` (sorted by id) best first on ``pool``, updating ``pool``.

    A promotion is evaluated again only when a product it covers was used by the
    promotion just applied (its result cannot have changed otherwise), so the work
    is about promotions x products, whatever the quantities.
    """
    applied: list[Application] = []
    pending = [(promo, evaluate(promo, _covered(promo, pool)))
               for promo in active if promo.codes & pool.keys()]
    while (found := _best(pending)) is not None:
        index, best = found
        del pending[index]
        applied.append(best)
        _use(pool, best.consumed)
        pending = [(promo, evaluate(promo, _covered(promo, pool))
                    if promo.codes & best.consumed.keys() else app) for promo, app in pending]
    return applied


def _best(pending: list[tuple[Promotion, Application | None]]
          ) -> tuple[int, Application] | None:
    """The largest saving in ``pending`` and its position (the first on a tie), or None."""
    found: tuple[int, Application] | None = None
    for index, (_, app) in enumerate(pending):
        if app is not None and (found is None or app.saving_minor > found[1].saving_minor):
            found = (index, app)
    return found


def _covered(promo: Promotion, pool: dict[str, PoolLine]) -> list[PoolLine]:
    """The lines of ``pool`` that ``promo`` covers (looked up from the smaller side)."""
    if len(promo.codes) < len(pool):
        return [pool[code] for code in promo.codes if code in pool]
    return [line for code, line in pool.items() if code in promo.codes]


def _use(pool: dict[str, PoolLine], consumed: Mapping[str, int]) -> None:
    """Take ``consumed`` (code -> units) out of ``pool``; a weighed line goes whole."""
    for code, used in consumed.items():
        line = pool[code]
        left = 0 if line.sold_by_weight else line.quantity - used
        pool[code] = PoolLine(code, line.unit_price_minor, left, line.sold_by_weight)


def _line(item: CatalogueItem, quantity: int, discount: int) -> PricedLine:
    regular = line_regular_minor(item, quantity)
    return PricedLine(item.code, item.name, quantity, item.unit_price_minor, regular,
                      item.sold_by_weight, discount, regular - discount, item.tax_category)
