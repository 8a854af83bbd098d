"""Numbers in the Israeli price files: plain decimals only, bounded, rejected with a reason."""

import pytest

from storefront.catalog import MAX_PRICE_MINOR
from storefront.pricing import PromotionKind
from storefront.pricing.israel import Rejected, parse_product, parse_promotion_row

PRICE_ROW = {"chain": "7290027600007", "store": "413", "barcode": "7290018724941",
             "name": "חומץ תפוחים", "price": "15.9", "weighed": "0", "allow_discount": "1"}
ITEM = parse_product(PRICE_ROW)
PROMO_ROW = {"chain": "7290027600007", "store": "413", "barcode": ITEM.code,
             "promo_id": "1", "description": "", "valid_until": "", "min_qty": "1",
             "price": "10.00", "rate": "", "club": "0", "coupon": "0", "reward_type": "3"}


@pytest.mark.parametrize(("text", "minor"), [
    ("12.90", 1290), (" 7 ", 700), ("+3.5", 350), (".50", 50), ("4.", 400),
    ("10000000.00", MAX_PRICE_MINOR), ("0010000000", MAX_PRICE_MINOR)])
def test_plain_decimal_prices_are_read_in_agorot(text: str, minor: int) -> None:
    assert parse_product({**PRICE_ROW, "price": text}).unit_price_minor == minor


@pytest.mark.parametrize(("text", "reason"), [
    ("1e30", "bad price"), ("1e3", "bad price"), ("1E-2", "bad price"), ("nan", "bad price"),
    ("NaN", "bad price"), ("sNaN", "bad price"), ("inf", "bad price"),
    ("-Infinity", "bad price"), ("1_000", "bad price"), ("١٢", "bad price"),
    ("0x10", "bad price"), ("1,290", "bad price"), (".", "bad price"), ("", "bad price"),
    ("12.345", "bad price"), ("-5", "non-positive price"), ("0", "non-positive price"),
    ("10000000.01", "price above the maximum"), ("99999999999", "price above the maximum"),
    ("9" * 400, "price above the maximum"),
    ("1." + "0" * 28 + "1", "bad price")])  # not rounded to 1.00 by Decimal's 28 digits
def test_other_prices_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_product({**PRICE_ROW, "price": text})
    assert caught.value.reason == reason


def test_plain_decimal_promotion_numbers_are_read() -> None:
    fixed = parse_promotion_row({**PROMO_ROW, "price": "10000000.00", "min_qty": "1000000"},
                                {ITEM.code: ITEM}, prefix="c:s").terms
    assert fixed.kind is PromotionKind.FIXED_PRICE and fixed.price_minor == MAX_PRICE_MINOR
    assert fixed.min_quantity_milli == 1_000_000_000
    rate = parse_promotion_row({**PROMO_ROW, "reward_type": "2", "price": "", "rate": "12.5"},
                               {ITEM.code: ITEM}, prefix="c:s").terms
    assert rate.rate_bp == 1250


@pytest.mark.parametrize(("changes", "reason"), [
    ({"price": "1e30"}, "bad promotion price"), ({"price": "1e3"}, "bad promotion price"),
    ({"price": "nan"}, "bad promotion price"), ({"price": "Infinity"}, "bad promotion price"),
    ({"price": "99999999999"}, "promotion price above the maximum"),
    ({"price": "10000000.01"}, "promotion price above the maximum"),
    ({"price": "-1"}, "non-positive promotion price"),
    ({"reward_type": "10", "min_qty": "3", "price": "1e30"}, "bad promotion price"),
    ({"min_qty": "1e30"}, "bad minimum quantity"), ({"min_qty": "inf"}, "bad minimum quantity"),
    ({"min_qty": "1000001"}, "minimum quantity too large"),
    ({"min_qty": "99999999999"}, "minimum quantity too large"),
    ({"reward_type": "2", "price": "", "rate": "1e30"}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": "1e1"}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": "NaN"}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": "-Infinity"}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": "9" * 400}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": "12.5" + "0" * 28 + "1"}, "bad discount rate")])
def test_other_promotion_numbers_are_rejected_with_a_reason(changes: dict[str, str],
                                                            reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_promotion_row({**PROMO_ROW, **changes}, {ITEM.code: ITEM}, prefix="c:s")
    assert caught.value.reason == reason
