"""Pricing of a cart against the catalogue: unit price x quantity, in minor units.

Prices are tax-inclusive shelf prices (the store setting for tax-exclusive
pricing, promotions and weighed goods come with the pricing issue).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from storefront.catalog import Catalogue, CatalogueItem
from storefront.errors import InvalidInput


@dataclass(frozen=True)
class PricedLine:
    """One receipt line; money in minor currency units."""

    code: str
    name: str
    quantity: int
    unit_price_minor: int
    line_total_minor: int


@dataclass(frozen=True)
class PricedCart:
    """A priced cart: lines sorted by product code, total in minor units."""

    lines: tuple[PricedLine, ...]
    total_minor: int
    currency: str


def price_lines(lines: Mapping[str, int], items: Mapping[str, CatalogueItem],
                currency: str) -> PricedCart:
    """Price ``lines`` (code -> quantity >= 1) with ``items`` (code -> catalogue item).

    Raises:
        InvalidInput: a quantity below 1, or an item priced in another currency.
        KeyError: a code missing from ``items`` (callers look codes up first).
    """
    priced = []
    for code in sorted(lines):
        quantity = lines[code]
        if quantity < 1:
            raise InvalidInput(f"quantity of {code} must be at least 1, got {quantity}")
        item = items[code]
        if item.currency != currency:
            raise InvalidInput(f"{code} is priced in {item.currency}, the store in {currency}")
        priced.append(PricedLine(code, item.name, quantity, item.unit_price_minor,
                                 item.unit_price_minor * quantity))
    return PricedCart(tuple(priced), sum(line.line_total_minor for line in priced), currency)


def price_cart(lines: Mapping[str, int], catalogue: Catalogue, currency: str) -> PricedCart:
    """Look the codes up in ``catalogue`` and price them; raises UnknownProduct."""
    return price_lines(lines, catalogue.get_many(lines), currency)
