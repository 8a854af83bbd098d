"""Review 6, D2 and D8 at the unit level: the tax a stored receipt was charged at
(``receipts.sale_tax``: recorded per line, or derived from the stored total for receipts
without recorded rates) and the clamped proportional amendment of a disputed line
(``disputes._amend``). Money is integer minor units, rates basis points."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from storefront.catalog import make_item
from storefront.disputes import _amend
from storefront.pricing import Promotion, PromotionKind, TaxPolicy, price_lines
from storefront.pricing.model import PricedLine
from storefront.receipts import (
    TAX_INCLUDED_KEY,
    TAX_RATE_KEY,
    _solve_rate,
    sale_tax,
    stamp_tax,
    total_of,
)

EXCL_17 = TaxPolicy(prices_include_tax=False, standard_rate_bp=1700)
EXCL_18 = TaxPolicy(prices_include_tax=False, standard_rate_bp=1800)
INCL_18 = TaxPolicy(prices_include_tax=True, standard_rate_bp=1800)


def _line(code: str, payable: int, category: str = "standard") -> dict[str, Any]:
    return asdict(PricedLine(code, code, 1, payable, payable, payable_minor=payable,
                             tax_category=category))


# --- D2: the rates a receipt was charged at --------------------------------------------


def test_unstamped_receipt_after_a_rate_change_is_taxed_at_the_rate_derived_from_its_total(
) -> None:
    lines = [_line("TV", 10000)]
    sale = sale_tax(lines, 11700, EXCL_18)  # paid at 17 %, the store is at 18 % today
    assert (sale.basis, sale.policy.rate_bp("standard"), sale.policy.prices_include_tax) == (
        "derived", 1700, False)


def test_unstamped_receipt_at_todays_rate_is_current_and_stamps_win_over_today() -> None:
    lines = [_line("TV", 10000)]
    assert sale_tax(lines, 11800, EXCL_18).basis == "current"
    stamped = stamp_tax(lines, EXCL_17)
    assert stamped[0][TAX_RATE_KEY] == 1700 and stamped[0][TAX_INCLUDED_KEY] is False
    sale = sale_tax(stamped, 11700, EXCL_18)
    assert (sale.basis, sale.policy.rate_bp("standard")) == ("recorded", 1700)
    # Prices including tax: the stamp is the only way to know the rate (the total does not
    # depend on it); without one today's rate is shown ("current").
    gross = [_line("W", 1170)]
    assert sale_tax(stamp_tax(gross, TaxPolicy(True, 1700)), 1170, INCL_18).policy.rate_bp(
        "standard") == 1700
    assert sale_tax(gross, 1170, INCL_18).basis == "current"


def test_stamps_that_do_not_reproduce_the_total_fall_back_to_the_total() -> None:
    # Stamped with 18 % at issue while the cart had been priced (and paid) at 17 %.
    stamped = stamp_tax([_line("TV", 10000)], EXCL_18)
    sale = sale_tax(stamped, 11700, EXCL_18)
    assert (sale.basis, sale.policy.rate_bp("standard")) == ("derived", 1700)


def test_a_changed_standard_rate_is_derived_beside_a_zero_rated_category() -> None:
    store = TaxPolicy(False, 1800, (("zero", 0),))
    lines = [_line("TV", 10000), _line("APPLE", 500, "zero")]
    sale = sale_tax(lines, 10000 + 1700 + 500, store)
    assert sale.basis == "derived"
    assert (sale.policy.rate_bp("standard"), sale.policy.rate_bp("zero")) == (1700, 0)
    assert total_of(tuple(PricedLine(**{k: v for k, v in line.items()}) for line in lines),
                    sale.policy)[0] == 12200


def test_an_ambiguous_or_impossible_total_is_unknown() -> None:
    # Two taxed categories, each of which could have changed: no single answer.
    store = TaxPolicy(False, 1800, (("reduced", 900),))
    lines = [_line("A", 10000), _line("B", 10000, "reduced")]
    assert sale_tax(lines, 20000 + 1800 + 900 - 100, store).basis == "unknown"
    # Less than the lines' net amount in a store excluding tax: no rate fits.
    assert sale_tax([_line("TV", 10000)], 9000, EXCL_18).basis == "unknown"
    # A category the store no longer knows, prices including tax.
    assert sale_tax([_line("X", 100, "gone")], 100, INCL_18).basis == "unknown"


def test_a_rate_cut_to_zero_beside_another_category_is_unknown_not_guessed() -> None:
    """Review 6b, item 2: standard 20 %, 'sanitary' 5 % at the sale and 0 % today. Both a
    standard rate of 25 % and a sanitary rate of 5 % explain the total: "unknown", never
    the standard category's change (which refunded the wrong amounts)."""
    store = TaxPolicy(False, 2000, (("sanitary", 0),))
    lines = [_line("STD", 1000), _line("SAN", 1000, "sanitary")]
    sale = sale_tax(lines, 1000 + 200 + 1000 + 50, store)
    assert sale.basis == "unknown"
    # One category alone explains it (the sanitary line bought alone): derived.
    sale = sale_tax([_line("SAN", 1000, "sanitary")], 1050, store)
    assert (sale.basis, sale.policy.rate_bp("sanitary")) == ("derived", 500)
    # A standard rate that rose since the sale: a 0 % category cannot explain less tax.
    sale = sale_tax(lines, 1000 + 170 + 1000, TaxPolicy(False, 1800, (("sanitary", 0),)))
    assert (sale.basis, sale.policy.rate_bp("standard")) == ("derived", 1700)


def test_a_store_that_switched_to_prices_including_tax_reads_old_receipts_as_excluding(
) -> None:
    sale = sale_tax([_line("TV", 10000)], 11800, INCL_18)
    assert (sale.basis, sale.policy.prices_include_tax) == ("derived", False)


@pytest.mark.parametrize("net", [1, 7, 99, 100, 333, 10000, 123457])
@pytest.mark.parametrize("rate", [0, 500, 850, 1700, 1800, 2000, 2500])
def test_a_derived_rate_always_reproduces_the_tax(net: int, rate: int) -> None:
    from storefront.pricing.rounding import round_half_up

    tax = round_half_up(net * rate, 10000)
    found = _solve_rate(net, tax, 1800)
    assert found is not None and round_half_up(net * found, 10000) == tax
    if net >= 10000:  # enough resolution: the rate itself comes back
        assert found == rate
    assert _solve_rate(net, round_half_up(net * 10000, 10000) + 1, 1800) is None


# --- D8: a disputed part of a line never refunds more than the line cost ----------------


def test_part_of_a_free_weighed_line_refunds_nothing() -> None:
    policy = TaxPolicy()
    items = {"W": make_item("W", "herbs", 99, "GBP", sold_by_weight=True),
             "T": make_item("T", "tea", 300, "GBP")}
    free = Promotion("p", PromotionKind.PERCENT_OFF, frozenset({"W"}), rate_bp=10000)
    cart = price_lines({"W": 26, "T": 1}, items, "GBP", promotions=[free], tax=policy)
    after = _amend(cart.lines, "W", 1)
    weighed = next(line for line in after if line.code == "W")
    assert (weighed.line_total_minor, weighed.discount_minor, weighed.payable_minor) == (2, 2, 0)
    assert total_of(cart.lines, policy)[0] - total_of(after, policy)[0] == 0


@pytest.mark.parametrize("price", [99, 101, 149, 333, 999, 1290, 2990])
@pytest.mark.parametrize("rate", [10000, 5000, 3300, 2500])
def test_split_disputes_of_a_weighed_line_never_refund_more_than_it_cost(
        price: int, rate: int) -> None:
    policy = TaxPolicy()
    item = make_item("W", "weighed", price, "GBP", sold_by_weight=True)
    promo = Promotion("p", PromotionKind.PERCENT_OFF, frozenset({"W"}), rate_bp=rate)
    for grams in range(5, 3000, 7):
        cart = price_lines({"W": grams}, {"W": item}, "GBP", promotions=[promo], tax=policy)
        paid = total_of(cart.lines, policy)[0]
        for first in {1, 2, grams // 3, grams // 2}:
            if not 0 < first < grams:
                continue
            left = _amend(cart.lines, "W", first)
            line = left[0]
            assert 0 <= line.discount_minor <= line.line_total_minor
            assert 0 <= line.payable_minor <= cart.lines[0].payable_minor
            after = total_of(left, policy)[0]
            first_refund = paid - after
            assert first_refund >= 0
            # The rest disputed later refunds what is left: together exactly what was paid.
            assert first_refund + (after - total_of(_amend(left, "W", grams - first),
                                                    policy)[0]) == paid


def test_amend_keeps_the_proportional_rule_where_no_clamp_is_needed() -> None:
    line = PricedLine("B", "biscuits", 3, 149, 447, discount_minor=147, payable_minor=300)
    (left,) = _amend((line,), "B", 1)
    assert (left.line_total_minor, left.discount_minor, left.payable_minor) == (298, 98, 200)
