"""Values of pricing: promotions, the tax policy and the priced cart.

Quantities inside promotions are *milli-quantities* (integers): one unit is
1000, and for goods sold by weight one gram is 1 (so 1 kg = 1000). A cart line
of a unit-priced product holds units; a cart line of a weighed product holds
grams. Money is integer minor units (agorot, pence); rates are integer basis
points (hundredths of a percent: 1800 = 18 %, 10000 = 100 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from storefront.errors import InvalidInput

MILLI_PER_UNIT = 1000
GRAMS_PER_KG = 1000
FULL_RATE_BP = 10_000
STANDARD_TAX_CATEGORY = "standard"


class PromotionKind(StrEnum):
    """What a promotion does (every kind also honours ``min_quantity_milli``).

    - ``fixed_price``: each eligible unit (or kg) costs ``price_minor``.
    - ``multi_buy``: every ``bundle_milli`` of eligible goods costs ``price_minor``
      ("3 for 10"); for weighed goods the bundle price is prorated over the weight.
    - ``percent_off``: ``rate_bp`` off the eligible goods.
    - ``buy_x_get_y``: in every group of ``buy_units + get_units`` eligible units the
      ``get_units`` cheapest get ``rate_bp`` off (10000 = free).
    """

    FIXED_PRICE = "fixed_price"
    MULTI_BUY = "multi_buy"
    PERCENT_OFF = "percent_off"
    BUY_X_GET_Y = "buy_x_get_y"


@dataclass(frozen=True)
class Promotion:
    """One promotion over a set of product codes (mix and match within ``codes``).

    Attributes:
        promotion_id: unique id (the importer uses ``chain:store:promo``).
        kind: see ``PromotionKind``.
        codes: eligible product codes.
        min_quantity_milli: the eligible goods in the cart must reach this
            milli-quantity (units x 1000 or grams) before the promotion applies.
        price_minor: fixed price per unit/kg, or the bundle price of a multi-buy.
        bundle_milli: bundle size of a multi-buy, milli-quantity.
        rate_bp: discount rate of ``percent_off`` and ``buy_x_get_y``.
        buy_units, get_units: the X and Y of ``buy_x_get_y``.
        club_only: only shoppers in the store's club get it.
        valid_until: last day it is valid (inclusive), or None for open-ended.

    Raises:
        InvalidInput: a field the kind needs is missing or out of range.
    """

    promotion_id: str
    kind: PromotionKind
    codes: frozenset[str]
    description: str = ""
    min_quantity_milli: int = 0
    price_minor: int | None = None
    bundle_milli: int | None = None
    rate_bp: int | None = None
    buy_units: int | None = None
    get_units: int | None = None
    club_only: bool = False
    valid_until: date | None = None

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise InvalidInput(f"promotion {self.promotion_id}: {problem}")

    def is_active(self, *, on: date, club_member: bool) -> bool:
        """True when valid on ``on`` and open to this shopper."""
        if self.club_only and not club_member:
            return False
        return self.valid_until is None or on <= self.valid_until


def _problem(promo: Promotion) -> str | None:
    if not promo.codes:
        return "no eligible products"
    if promo.min_quantity_milli < 0:
        return "minimum quantity must not be negative"
    if promo.price_minor is not None and promo.price_minor < 0:
        return "price must not be negative"
    if promo.rate_bp is not None and not 0 < promo.rate_bp <= FULL_RATE_BP:
        return "rate must be 1-10000 basis points"
    kind = promo.kind
    if kind in (PromotionKind.FIXED_PRICE, PromotionKind.MULTI_BUY) and promo.price_minor is None:
        return f"{kind} needs a price"
    if kind is PromotionKind.MULTI_BUY and (promo.bundle_milli or 0) <= 0:
        return "multi_buy needs a positive bundle size"
    if kind in (PromotionKind.PERCENT_OFF, PromotionKind.BUY_X_GET_Y) and promo.rate_bp is None:
        return f"{kind} needs a rate"
    if kind is PromotionKind.BUY_X_GET_Y and ((promo.buy_units or 0) < 1
                                              or (promo.get_units or 0) < 1):
        return "buy_x_get_y needs buy_units >= 1 and get_units >= 1"
    return None


@dataclass(frozen=True)
class TaxPolicy:
    """The store's tax setting: shelf prices include tax or not, and rates per category.

    ``standard_rate_bp`` is the rate of the ``standard`` category (Israel: VAT
    18 % since 2025-01-01, 1800 bp); ``category_rates_bp`` adds other categories
    (e.g. ``zero`` for VAT-free fresh produce).
    """

    prices_include_tax: bool = True
    standard_rate_bp: int = 1800
    category_rates_bp: tuple[tuple[str, int], ...] = ()

    def rate_bp(self, category: str) -> int:
        """The rate of ``category``; raises InvalidInput for an unknown category."""
        for code, rate in self.category_rates_bp:
            if code == category:
                return rate
        if category == STANDARD_TAX_CATEGORY:
            return self.standard_rate_bp
        raise InvalidInput(f"unknown tax category {category!r}")

    def with_categories(self, rates_bp: dict[str, int]) -> TaxPolicy:
        """A copy that also knows ``rates_bp`` (category -> basis points)."""
        merged = dict(self.category_rates_bp) | rates_bp
        return TaxPolicy(self.prices_include_tax, self.standard_rate_bp,
                         tuple(sorted(merged.items())))


@dataclass(frozen=True)
class PricedLine:
    """One receipt line; money in minor units.

    ``quantity`` is units, or grams when ``sold_by_weight`` (then
    ``unit_price_minor`` is per kg). ``line_total_minor`` is the regular price
    of the line, ``discount_minor`` the promotions' share of it and
    ``payable_minor`` the difference.
    """

    code: str
    name: str
    quantity: int
    unit_price_minor: int
    line_total_minor: int
    sold_by_weight: bool = False
    discount_minor: int = 0
    payable_minor: int = 0
    tax_category: str = STANDARD_TAX_CATEGORY


@dataclass(frozen=True)
class AppliedPromotion:
    """A promotion applied to the cart: ``saving_minor`` > 0, split by product code."""

    promotion_id: str
    description: str
    saving_minor: int
    savings_by_code: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class TaxLine:
    """Tax of one category on the receipt: ``net + tax = gross`` in minor units."""

    category: str
    rate_bp: int
    net_minor: int
    tax_minor: int
    gross_minor: int


@dataclass(frozen=True)
class PricedCart:
    """A priced cart: lines sorted by product code; ``total_minor`` is what the shopper pays."""

    lines: tuple[PricedLine, ...]
    total_minor: int
    currency: str
    promotions: tuple[AppliedPromotion, ...] = ()
    taxes: tuple[TaxLine, ...] = field(default=())
    prices_include_tax: bool = True

    @property
    def discount_minor(self) -> int:
        """Sum of all promotion savings."""
        return sum(promo.saving_minor for promo in self.promotions)

    @property
    def tax_minor(self) -> int:
        """Sum of tax over all categories."""
        return sum(tax.tax_minor for tax in self.taxes)
