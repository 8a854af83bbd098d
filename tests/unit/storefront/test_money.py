import pytest

from storefront.errors import InvalidInput
from storefront.money import format_minor, parse_major_to_minor


@pytest.mark.parametrize(("text", "minor"), [("6.95", 695), ("0", 0), ("12", 1200),
                                              (" 0.10 ", 10), ("1e2", 10000),
                                              ("1." + "0" * 40, 100), ("-2.5", -250),
                                              ("1e12", 10**14)])
def test_parse_major_to_minor(text: str, minor: int) -> None:
    assert parse_major_to_minor(text) == minor


@pytest.mark.parametrize("text", [
    "", "abc", "0.001", "NaN", "inf", "1,50", "1_000", "\u0661\u0662",  # Arabic-Indic 12
    "1e999999999",  # would be a billion-digit integer
    "1e-999999999",  # underflows to 0 in Decimal's default context
    "1e13", "-1e13",  # above MAX_MAJOR_UNITS
    "1." + "0" * 40 + "1",  # finer than a minor unit beyond Decimal's default 28 digits
    "1" * 65,  # too long
])
def test_parse_refuses_what_no_shelf_price_can_be(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_major_to_minor(text)


def test_format_minor() -> None:
    assert format_minor(695, "GBP") == "6.95 GBP"
    assert format_minor(-5, "GBP") == "-0.05 GBP"
