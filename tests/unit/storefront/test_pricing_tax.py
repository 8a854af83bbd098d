"""Tax inclusive and exclusive, per receipt per category, and the rounding helpers."""

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storefront.catalog import make_item
from storefront.errors import InvalidInput
from storefront.pricing import TaxPolicy, price_lines, tax_policy_from_settings
from storefront.pricing.rounding import allocate, round_half_up
from storefront.pricing.tax import receipt_taxes
from storefront.settings import Settings

DAY = date(2026, 8, 10)
ITEMS = {i.code: i for i in (
    make_item("M", "Milk", 590, "ILS"),
    make_item("T", "Tomatoes", 990, "ILS", tax_category="zero"),
)}
POLICY = TaxPolicy(True, 1800, (("zero", 0),))


def test_prices_including_tax_keep_the_shelf_total() -> None:
    priced = price_lines({"M": 3, "T": 1}, ITEMS, "ILS", tax=POLICY, on=DAY)
    assert priced.total_minor == 3 * 590 + 990
    standard = next(t for t in priced.taxes if t.category == "standard")
    # 1770 x 18 / 118 = 270.0 -> 270; net 1500
    assert (standard.gross_minor, standard.tax_minor, standard.net_minor) == (1770, 270, 1500)
    zero = next(t for t in priced.taxes if t.category == "zero")
    assert zero.tax_minor == 0 and zero.gross_minor == 990


def test_prices_excluding_tax_add_it_once_per_category() -> None:
    policy = TaxPolicy(False, 1800, (("zero", 0),))
    priced = price_lines({"M": 3, "T": 1}, ITEMS, "ILS", tax=policy, on=DAY)
    # 1770 x 18 % = 318.6 -> 319; tomatoes 0 %
    assert priced.tax_minor == 319
    assert priced.total_minor == 1770 + 319 + 990


def test_tax_is_rounded_once_per_receipt_not_per_line() -> None:
    # 7 lines of 0.05 each: per line 0.05 x 18 % = 0.9 -> 1 agora each = 7;
    # per receipt 35 x 18 % = 6.3 -> 6
    items = {f"C{i}": make_item(f"C{i}", "Sweet", 5, "ILS") for i in range(7)}
    policy = TaxPolicy(False, 1800)
    priced = price_lines(dict.fromkeys(items, 1), items, "ILS", tax=policy, on=DAY)
    assert priced.tax_minor == 6 and priced.total_minor == 41


@pytest.mark.parametrize(("amount", "include", "tax"), [
    (59, True, 9),     # 59 x 18/118 = 9.0
    (1, False, 0),     # 0.18 -> 0
    (25, False, 5),    # 4.5 -> 5 (half up)
    (75, False, 14),   # 13.5 -> 14
    (-25, False, -5),  # a refund rounds away from zero, mirroring the sale
])
def test_rounding_edge_cases(amount: int, include: bool, tax: int) -> None:
    (line,) = receipt_taxes([("standard", amount)], TaxPolicy(include, 1800))
    assert line.tax_minor == tax
    assert line.net_minor + line.tax_minor == line.gross_minor


def test_unknown_category_is_refused_and_settings_build_the_policy() -> None:
    with pytest.raises(InvalidInput):
        receipt_taxes([("luxury", 100)], TaxPolicy())
    policy = tax_policy_from_settings(Settings(prices_include_tax=False,
                                               vat_rate_percent=Decimal("17.5")))
    assert policy == TaxPolicy(False, 1750)
    assert Settings().vat_rate_percent == Decimal("18") and Settings().prices_include_tax


@given(st.integers(-10**12, 10**12), st.integers(1, 10**6))
def test_round_half_up_matches_decimal(numerator: int, denominator: int) -> None:
    expected = (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal(1), rounding=ROUND_HALF_UP)
    assert round_half_up(numerator, denominator) == int(expected)


@given(st.integers(0, 10**6), st.lists(st.integers(0, 10**4), min_size=1, max_size=8))
def test_allocate_always_sums_to_the_amount(amount: int, weights: list[int]) -> None:
    keyed = [(f"k{i}", w) for i, w in enumerate(weights)]
    if sum(weights) == 0:
        with pytest.raises(InvalidInput):
            allocate(amount, keyed)
        return
    parts = allocate(amount, keyed)
    assert sum(parts.values()) == amount
    for key, weight in keyed:
        assert abs(parts[key] - Fraction(amount * weight, sum(weights))) < 1
