import pytest

from storefront.catalog import is_valid_gtin, make_item, validate_code
from storefront.errors import InvalidInput
from storefront.pricing import price_lines

ITEMS = {i.code: i for i in (make_item("4006381333931", "Pen", 150, "GBP"),
                             make_item("85123A", "Heart holder", 295, "GBP"))}


def test_price_lines_multiplies_and_sums_in_minor_units() -> None:
    priced = price_lines({"85123A": 3, "4006381333931": 2}, ITEMS, "GBP")
    assert [(line.code, line.line_total_minor) for line in priced.lines] == [
        ("4006381333931", 300), ("85123A", 885)]
    assert priced.total_minor == 1185


def test_price_lines_refuses_zero_quantity_and_foreign_currency() -> None:
    with pytest.raises(InvalidInput):
        price_lines({"85123A": 0}, ITEMS, "GBP")
    with pytest.raises(InvalidInput):
        price_lines({"85123A": 1}, ITEMS, "EUR")


def test_gtin_check_digit() -> None:
    assert is_valid_gtin("4006381333931")
    assert not is_valid_gtin("4006381333932")
    assert not is_valid_gtin("85123A")
    assert ITEMS["4006381333931"].is_gtin and not ITEMS["85123A"].is_gtin


@pytest.mark.parametrize("code", ["", "a b", "x" * 33, "€1", "12;DROP"])
def test_bad_codes_refused(code: str) -> None:
    with pytest.raises(InvalidInput):
        validate_code(code)


@pytest.mark.parametrize(("name", "price"), [("", 1), ("ok", -1), ("ok", 1.5), ("ok", True)])
def test_bad_items_refused(name: str, price: object) -> None:
    with pytest.raises(InvalidInput):
        make_item("X1", name, price, "GBP")  # type: ignore[arg-type]
