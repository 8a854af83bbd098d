"""Every promotion kind, weighed goods, the best-first rule, club-only and validity."""

from datetime import date

import pytest

from storefront.catalog import make_item
from storefront.errors import InvalidInput
from storefront.pricing import Promotion, PromotionKind, TaxPolicy, price_lines

DAY = date(2026, 8, 10)
ITEMS = {i.code: i for i in (
    make_item("A", "Cola", 500, "ILS"),
    make_item("B", "Lemonade", 400, "ILS"),
    make_item("C", "Water", 300, "ILS"),
    make_item("N", "Tobacco", 3000, "ILS", allow_discount=False),
    make_item("W", "Salmon", 5990, "ILS", sold_by_weight=True),
)}
K = PromotionKind


def _price(lines, promos=(), **kwargs):
    return price_lines(lines, ITEMS, "ILS", promotions=promos, on=DAY, **kwargs)


def test_multi_buy_three_for_ten_with_remainder_at_regular_price() -> None:
    promo = Promotion("p", K.MULTI_BUY, frozenset({"C"}), "3 for 10", bundle_milli=3000,
                      price_minor=1000, min_quantity_milli=3000)
    priced = _price({"C": 7}, [promo])
    # a bundle costs 10.00 but three units cost 3 x 3.00 = 9.00: no saving, not applied
    assert priced.total_minor == 2100 and priced.promotions == ()
    cheaper = Promotion("p", K.MULTI_BUY, frozenset({"C"}), "3 for 8", bundle_milli=3000,
                        price_minor=800)
    priced = _price({"C": 7}, [cheaper])
    assert priced.total_minor == 2 * 800 + 300  # two bundles + one unit at 3.00 = 19.00
    assert priced.lines[0].discount_minor == 200 and priced.discount_minor == 200


def test_multi_buy_mix_and_match_bundles_the_dearest_units_first() -> None:
    promo = Promotion("p", K.MULTI_BUY, frozenset({"A", "B", "C"}), "any 2 for 7",
                      bundle_milli=2000, price_minor=700)
    priced = _price({"A": 1, "B": 1, "C": 1}, [promo])
    # ranked 5.00, 4.00, 3.00: bundle (A, B) 9.00 -> 7.00 saves 2.00; C stays 3.00
    assert priced.total_minor == 700 + 300
    savings = dict(priced.promotions[0].savings_by_code)
    assert savings == {"A": 111, "B": 89}  # 2.00 split 5:4, largest remainder
    assert sum(line.payable_minor for line in priced.lines) == priced.total_minor


def test_buy_x_get_y_free_gives_the_cheapest_of_each_group() -> None:
    promo = Promotion("p", K.BUY_X_GET_Y, frozenset({"A", "C"}), "2+1", rate_bp=10_000,
                      buy_units=2, get_units=1)
    priced = _price({"A": 2, "C": 2}, [promo])
    # ranked A 5, A 5, C 3 | C 3: the first group's cheapest (C, 3.00) is free
    assert priced.total_minor == 2 * 500 + 2 * 300 - 300
    second_half = Promotion("q", K.BUY_X_GET_Y, frozenset({"B"}), "2nd at 50%", rate_bp=5000,
                            buy_units=1, get_units=1)
    assert _price({"B": 3}, [second_half]).total_minor == 1200 - 200


def test_percent_off_rounds_half_up_once_per_promotion() -> None:
    promo = Promotion("p", K.PERCENT_OFF, frozenset({"B", "C"}), "15%", rate_bp=1500)
    priced = _price({"B": 1, "C": 1}, [promo])
    # (4.00 + 3.00) x 15 % = 1.05 exactly
    assert priced.discount_minor == 105 and priced.total_minor == 595
    odd = Promotion("p", K.PERCENT_OFF, frozenset({"C"}), "12.5%", rate_bp=1250)
    # 900 agorot x 12.5 % = 112.5 agorot -> 113 (half up)
    assert _price({"C": 3}, [odd]).discount_minor == 113


def test_minimum_quantity_gates_a_promotion() -> None:
    promo = Promotion("p", K.PERCENT_OFF, frozenset({"A"}), "10% from 3", rate_bp=1000,
                      min_quantity_milli=3000)
    assert _price({"A": 2}, [promo]).discount_minor == 0
    assert _price({"A": 3}, [promo]).discount_minor == 150


def test_fixed_price_per_unit_and_per_kg() -> None:
    promo = Promotion("p", K.FIXED_PRICE, frozenset({"A", "W"}), "deal", price_minor=450)
    priced = _price({"A": 2, "W": 500}, [promo])
    # A: 2 x (5.00 - 4.50) = 1.00; W: 500 g at 4.50/kg = 2.25 vs 59.90 x 0.5 = 29.95
    assert priced.discount_minor == 100 + (2995 - 225)


def test_weighed_goods_price_per_kg_times_grams_rounds_half_up() -> None:
    assert _price({"W": 1}).total_minor == 6  # 5990 x 1 / 1000 = 5.99 -> 6
    assert _price({"W": 250}).total_minor == 1498  # 1497.5 -> 1498 (half up)
    assert _price({"W": 1000}).total_minor == 5990
    bundle = Promotion("p", K.MULTI_BUY, frozenset({"W"}), "1.5 kg for 60", bundle_milli=1500,
                       price_minor=6000, min_quantity_milli=1500)
    assert _price({"W": 1499}, [bundle]).discount_minor == 0
    # 1800 g: 6000 x 1800 / 1500 = 72.00 instead of 5990 x 1.8 = 107.82
    assert _price({"W": 1800}, [bundle]).total_minor == 7200
    small = Promotion("s", K.MULTI_BUY, frozenset({"W", "A"}), "200 g for 10", bundle_milli=200,
                      price_minor=1000, min_quantity_milli=200)
    # 333 g: 1000 x 333 / 200 = 1665 (vs 5990 x 0.333 = 1994.67 -> 1995); units of A untouched
    assert _price({"W": 333, "A": 1}, [small]).total_minor == 1665 + 500


def test_club_only_needs_membership_and_expired_promotions_do_not_apply() -> None:
    club = Promotion("p", K.FIXED_PRICE, frozenset({"A"}), "club", price_minor=300,
                     club_only=True)
    assert _price({"A": 1}, [club]).total_minor == 500
    assert _price({"A": 1}, [club], club_member=True).total_minor == 300
    old = Promotion("q", K.FIXED_PRICE, frozenset({"A"}), "old", price_minor=300,
                    valid_until=date(2026, 8, 9))
    assert _price({"A": 1}, [old]).total_minor == 500
    last_day = Promotion("q", K.FIXED_PRICE, frozenset({"A"}), "ok", price_minor=300,
                         valid_until=DAY)
    assert _price({"A": 1}, [last_day]).total_minor == 300


def test_best_for_the_shopper_wins_and_promotions_do_not_stack() -> None:
    small = Promotion("a-small", K.PERCENT_OFF, frozenset({"A"}), "10%", rate_bp=1000)
    big = Promotion("b-big", K.FIXED_PRICE, frozenset({"A"}), "2.00", price_minor=200)
    priced = _price({"A": 2}, [small, big])
    assert [p.promotion_id for p in priced.promotions] == ["b-big"]
    assert priced.total_minor == 400


def test_left_over_units_can_take_another_promotion() -> None:
    bundle = Promotion("a", K.MULTI_BUY, frozenset({"C"}), "2 for 4", bundle_milli=2000,
                       price_minor=400)
    percent = Promotion("b", K.PERCENT_OFF, frozenset({"C"}), "10%", rate_bp=1000)
    priced = _price({"C": 3}, [bundle, percent])
    # bundle saves 2.00 on two units; the third unit gets 10 % = 0.30
    assert priced.total_minor == 400 + 270
    assert [p.promotion_id for p in priced.promotions] == ["a", "b"]


def test_equal_savings_break_ties_by_promotion_id() -> None:
    one = Promotion("z", K.FIXED_PRICE, frozenset({"A"}), "z", price_minor=400)
    two = Promotion("m", K.FIXED_PRICE, frozenset({"A"}), "m", price_minor=400)
    assert [p.promotion_id for p in _price({"A": 1}, [one, two]).promotions] == ["m"]


def test_products_closed_to_discounts_never_take_part() -> None:
    promo = Promotion("p", K.PERCENT_OFF, frozenset({"N"}), "50%", rate_bp=5000)
    assert _price({"N": 1}, [promo]).total_minor == 3000


@pytest.mark.parametrize("bad", [
    dict(kind=K.MULTI_BUY, price_minor=100),
    dict(kind=K.PERCENT_OFF, rate_bp=10_001),
    dict(kind=K.PERCENT_OFF),
    dict(kind=K.BUY_X_GET_Y, rate_bp=10_000, buy_units=0, get_units=1),
    dict(kind=K.FIXED_PRICE, price_minor=-1),
    dict(kind=K.FIXED_PRICE, price_minor=1, min_quantity_milli=-1000),
])
def test_inconsistent_promotions_are_refused(bad) -> None:
    with pytest.raises(InvalidInput):
        Promotion("p", codes=frozenset({"A"}), **bad)


@pytest.mark.parametrize("quantity", [0, -2, True, 1.5])
def test_bad_quantities_are_refused(quantity) -> None:
    with pytest.raises(InvalidInput):
        _price({"A": quantity})


def test_unknown_product_and_unknown_tax_category() -> None:
    with pytest.raises(KeyError):
        _price({"missing": 1})
    items = {"X": make_item("X", "Book", 1000, "ILS", tax_category="books")}
    with pytest.raises(InvalidInput):
        price_lines({"X": 1}, items, "ILS", tax=TaxPolicy(), on=DAY)
