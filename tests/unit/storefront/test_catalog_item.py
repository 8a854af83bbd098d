"""``make_item`` checks every product the catalogue takes, whichever way it comes in."""

from __future__ import annotations

import pytest

from storefront.catalog import MAX_PRICE_MINOR, make_item
from storefront.errors import InvalidInput


def test_a_price_up_to_the_bound_is_taken() -> None:
    assert make_item("A-1", "Anvil", MAX_PRICE_MINOR, "GBP").unit_price_minor == MAX_PRICE_MINOR
    assert make_item("A-1", "Free sample", 0, "GBP").unit_price_minor == 0


@pytest.mark.parametrize(("price", "reason"), [
    (MAX_PRICE_MINOR + 1, "above the highest allowed"),
    (10**30, "above the highest allowed"),
    (-1, "must not be negative"),
    (True, "integer of minor units"),
    (1.5, "integer of minor units"),
    ("100", "integer of minor units"),
])
def test_bad_prices_are_refused_with_the_reason(price: object, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        make_item("A-1", "Anvil", price, "GBP")  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "name", "tax"), [
    ("", "x", "standard"), ("a b", "x", "standard"), ("A" * 33, "x", "standard"),
    ("A-1", "", "standard"), ("A-1", "n" * 301, "standard"), ("A-1", "x", "bad tax"),
])
def test_bad_codes_names_and_tax_categories_are_refused(code: str, name: str,
                                                        tax: str) -> None:
    with pytest.raises(InvalidInput):
        make_item(code, name, 100, "GBP", tax_category=tax)
