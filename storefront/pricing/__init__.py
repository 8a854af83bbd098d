"""Pricing of a cart: catalogue prices, weighed goods, promotions and tax, in minor units.

Public API:
    price_cart(lines, catalogue, currency, *, tax=None, club_member=False, on=None)
    price_lines(lines, items, currency, *, promotions=(), tax=..., club_member=False, on=None)
    Promotion, PromotionKind, TaxPolicy, PricedCart, PricedLine, AppliedPromotion, TaxLine
    PromotionRepository (promotions and tax categories in the database)
    render_receipt_text(priced) (plain text, bidi-isolated names)
See ``engine`` for the promotion rule, ``tax`` for the tax rounding rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from storefront.catalog import Catalogue, CatalogueItem
from storefront.pricing.engine import DEFAULT_TAX_POLICY, line_regular_minor, price_lines
from storefront.pricing.model import (
    AppliedPromotion,
    PricedCart,
    PricedLine,
    Promotion,
    PromotionKind,
    TaxLine,
    TaxPolicy,
)
from storefront.pricing.receipt_text import render_receipt_text
from storefront.pricing.repository import PromotionRepository
from storefront.settings import Settings

__all__ = [
    "DEFAULT_TAX_POLICY", "AppliedPromotion", "PricedCart", "PricedLine", "Promotion",
    "PromotionKind", "PromotionRepository", "TaxLine", "TaxPolicy", "line_regular_minor",
    "price_cart", "price_lines", "render_receipt_text", "tax_policy_from_settings",
]


def tax_policy_from_settings(settings: Settings) -> TaxPolicy:
    """The store's ``TaxPolicy`` from ``prices_include_tax`` and ``vat_rate_percent``."""
    return TaxPolicy(settings.prices_include_tax, int(settings.vat_rate_percent * 100))


def price_cart(lines: Mapping[str, int], catalogue: Catalogue, currency: str, *,
               tax: TaxPolicy | None = None, club_member: bool = False,
               on: date | None = None,
               items: Mapping[str, CatalogueItem] | None = None) -> PricedCart:
    """Look the codes up in ``catalogue`` with their promotions and tax categories; price them.

    ``tax`` defaults to prices including 18 % standard VAT (build it from the
    store settings with ``TaxPolicy`` to change that); ``club_member`` opens
    club-only promotions; ``on`` is the pricing day (default today, UTC);
    ``items``: the products of ``lines`` when the caller has just read them from
    ``catalogue`` (they are not read again). Promotions and tax categories are read
    in one database session.

    Raises:
        UnknownProduct: a code is not in the catalogue.
        InvalidInput: see ``price_lines``.
        KeyError: a code of ``lines`` missing from the given ``items``.
    """
    found = catalogue.get_many(lines) if items is None else items
    rates, promotions = PromotionRepository(catalogue.sessions).for_cart(lines)
    policy = (tax or DEFAULT_TAX_POLICY).with_categories(rates)
    return price_lines(lines, found, currency, promotions=promotions, tax=policy,
                       club_member=club_member, on=on)
