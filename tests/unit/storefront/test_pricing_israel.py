"""Rows of the Israeli price-transparency files: accepted, and rejected with a reason."""

from datetime import date

import pytest

from storefront.pricing import PromotionKind
from storefront.pricing.israel import (
    Rejected,
    group_promotions,
    parse_product,
    parse_promotion_row,
)

PRICE_ROW = {"chain": "7290027600007", "store": "413", "barcode": "7290018724941",
             "name": "חומץ תפוחים צלול 5% 1ליט", "price": "15.9", "weighed": "0",
             "allow_discount": "1"}
ITEMS = {item.code: item for item in (
    parse_product(PRICE_ROW),
    parse_product({**PRICE_ROW, "barcode": "2094", "name": "תפוח ענה", "price": "7.9",
                   "weighed": "1"}),
)}
PROMO_ROW = {"chain": "7290027600007", "store": "413", "barcode": "7290018724941",
             "promo_id": "1", "description": "3ב10", "valid_until": "2026-08-22",
             "min_qty": "3.00", "price": "10.00", "rate": "", "club": "0", "coupon": "0",
             "reward_type": "10"}


def _promo(**changes: str):
    return parse_promotion_row({**PROMO_ROW, **changes}, ITEMS, prefix="c:s").terms


def test_products_keep_hebrew_names_prices_in_agorot_and_mark_internal_codes() -> None:
    vinegar, apple = ITEMS["7290018724941"], ITEMS["2094"]
    assert vinegar.name == "חומץ תפוחים צלול 5% 1ליט" and vinegar.unit_price_minor == 1590
    assert vinegar.is_gtin and vinegar.currency == "ILS" and not vinegar.sold_by_weight
    assert apple.sold_by_weight and not apple.is_gtin and apple.unit_price_minor == 790
    internal = parse_product({**PRICE_ROW, "barcode": "7290018724942"})  # check digit fails
    assert not internal.is_gtin


@pytest.mark.parametrize(("changes", "reason"), [
    ({"price": "abc"}, "bad price"),
    ({"price": "-3.50"}, "non-positive price"),
    ({"price": "0.0"}, "non-positive price"),
    ({"price": "1.005"}, "bad price"),
    ({"price": ""}, "bad price"),
    ({"name": "  "}, "missing name"),
    ({"barcode": ""}, "missing barcode"),
    ({"barcode": "12 34"}, "bad barcode"),
    ({"weighed": "yes"}, "bad weighed flag"),
])
def test_malformed_price_rows_are_rejected_with_a_reason(changes, reason) -> None:
    with pytest.raises(Rejected) as caught:
        parse_product({**PRICE_ROW, **changes})
    assert caught.value.reason == reason


def test_reward_types_map_to_promotion_kinds() -> None:
    multi = _promo()
    assert (multi.kind, multi.bundle_milli, multi.price_minor) == (PromotionKind.MULTI_BUY,
                                                                   3000, 1000)
    assert _promo(min_qty="1").kind is PromotionKind.FIXED_PRICE
    percent = _promo(reward_type="2", price="11.93", rate="25", min_qty="1.00")
    assert (percent.kind, percent.rate_bp) == (PromotionKind.PERCENT_OFF, 2500)
    assert _promo(reward_type="2", price="", rate="5000").rate_bp == 5000  # hundredths of %
    gift = _promo(reward_type="9", price="", rate="", min_qty="3")
    assert (gift.kind, gift.buy_units, gift.get_units, gift.rate_bp) == (
        PromotionKind.BUY_X_GET_Y, 2, 1, 10_000)
    assert _promo(club="1").club_only
    # columns a reward type does not use are ignored, however odd
    assert _promo(reward_type="3", min_qty="1", rate="-99400").price_minor == 1000
    assert _promo(reward_type="9", min_qty="3", price="0", rate="0.00").rate_bp == 10_000
    weighed = _promo(barcode="2094", min_qty="1.500", price="37.50")
    assert (weighed.kind, weighed.bundle_milli) == (PromotionKind.MULTI_BUY, 1500)
    any_weight = _promo(barcode="2094", reward_type="3", min_qty="0.010", price="5.90")
    assert (any_weight.kind, any_weight.price_minor) == (PromotionKind.FIXED_PRICE, 590)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"coupon": "1"}, "needs a coupon"),
    ({"barcode": "0000000000000"}, "unknown product"),
    ({"reward_type": "0"}, "unsupported reward type 0"),
    ({"reward_type": ""}, "unsupported reward type (empty)"),
    ({"min_qty": "-2"}, "negative minimum quantity"),
    ({"min_qty": "two"}, "bad minimum quantity"),
    ({"min_qty": "2.5"}, "fractional quantity of a unit-priced product"),
    ({"price": "-1"}, "non-positive promotion price"),
    ({"price": "ten"}, "bad promotion price"),
    ({"reward_type": "2", "price": "", "rate": "-99400"}, "bad discount rate"),
    ({"reward_type": "2", "price": "", "rate": ""}, "missing discount rate"),
    ({"reward_type": "3", "price": ""}, "missing promotion price"),
    ({"reward_type": "9", "min_qty": "1"}, "buy-x-get-y needs 2+ units of a unit-priced product"),
    ({"valid_until": "31/08/2026"}, "bad valid-until date"),
    ({"promo_id": " "}, "missing promotion id"),
])
def test_malformed_promotion_rows_are_rejected_with_a_reason(changes, reason) -> None:
    with pytest.raises(Rejected) as caught:
        _promo(**changes)
    assert caught.value.reason == reason


def test_expired_promotions_are_skipped_as_of_the_snapshot() -> None:
    with pytest.raises(Rejected, match="expired"):
        parse_promotion_row({**PROMO_ROW, "valid_until": "2025-06-28"}, ITEMS, prefix="c:s",
                            as_of=date(2026, 8, 10))


def test_rows_of_one_promotion_id_group_by_terms() -> None:
    rows = [parse_promotion_row({**PROMO_ROW, **changes}, ITEMS, prefix="c:s")
            for changes in ({}, {"barcode": "2094", "min_qty": "1.5"}, {"promo_id": "2"})]
    grouped = {promo.promotion_id: promo for promo in group_promotions(rows)}
    assert set(grouped) == {"c:s:1", "c:s:1#2", "c:s:2"}
    assert grouped["c:s:1"].codes == frozenset({"7290018724941"})


CONTROLS = ["\x00", "\x1b", "\t", "\n", "\r", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", CONTROLS)
def test_control_characters_in_names_descriptions_and_ids_reject_the_row(char: str) -> None:
    with pytest.raises(Rejected, match="control character in name"):
        parse_product({**PRICE_ROW, "name": f"חלב{char}[31m"})
    with pytest.raises(Rejected, match="control character in description"):
        _promo(description=f"3ב10{char}")
    with pytest.raises(Rejected, match="bad promotion id"):
        _promo(promo_id=f"12{char}3")
    with pytest.raises(Rejected, match="bad promotion id"):
        _promo(promo_id=f"123{char}")
    with pytest.raises(Rejected, match="control character in name"):
        parse_product({**PRICE_ROW, "name": f"{char}חלב{char}"})


def test_names_keep_their_text_with_runs_of_spaces_collapsed() -> None:
    item = parse_product({**PRICE_ROW, "name": "  חלב \u00a0 3%  "})
    assert item.name == "חלב 3%"
    assert _promo(description=" 3 ב 10 ").description == "3 ב 10"
    with pytest.raises(Rejected, match="bad promotion id"):
        _promo(promo_id="9" * 33)
    assert _promo(promo_id="9" * 32).promotion_id == "c:s:" + "9" * 32


@pytest.mark.parametrize("text", [
    "2031-01-01xyz", "2031-01-01T", "2031-01-01 x", "2031-13-45", "20310101", "2031-1-1",
    "2031-01-01T24:00", "2031-01-01T12:60", "2031-01-01T12:00:00+02:00", "٢٠٣١-٠١-٠١",
    "2031-01-01Z", "x2031-01-01",
])
def test_valid_until_dates_are_parsed_strictly(text: str) -> None:
    with pytest.raises(Rejected, match="bad valid-until date"):
        _promo(valid_until=text)


@pytest.mark.parametrize("text", ["2031-01-01", " 2031-01-01 ", "2031-01-01T23:59",
                                  "2031-01-01 00:00:00"])
def test_valid_until_dates_as_the_files_write_them(text: str) -> None:
    assert _promo(valid_until=text).valid_until == date(2031, 1, 1)
    assert _promo(valid_until="").valid_until is None


def test_generated_promotion_ids_never_collide_with_the_files_ids() -> None:
    """Ids X, X (other terms) and X#2: the second X became X#2 as well (an IntegrityError
    when stored); the generated id skips every id of the file."""
    rows = [parse_promotion_row({**PROMO_ROW, **changes}, ITEMS, prefix="c:s")
            for changes in ({"promo_id": "X"},
                            {"promo_id": "X", "barcode": "2094", "min_qty": "1.5"},
                            {"promo_id": "X#2", "price": "9.00"},
                            {"promo_id": "X#3", "price": "8.00"},
                            {"promo_id": "X", "price": "7.00"},
                            {"promo_id": "X#2", "price": "6.00"})]
    grouped = group_promotions(rows)
    ids = [promo.promotion_id for promo in grouped]
    assert len(ids) == len(set(ids)) == 6
    assert ids == ["c:s:X", "c:s:X#4", "c:s:X#2", "c:s:X#3", "c:s:X#5", "c:s:X#2#2"]
    assert {p.promotion_id: p.price_minor for p in grouped}["c:s:X#2"] == 900


@pytest.mark.parametrize("name", ["\u200b", "\u200d", "\ufeff", "\u00ad", "\u202e",
                                  "\u200b \u2060\u200e", " \u3164 ", "\u0301", "\u2800"])
def test_names_with_no_visible_character_are_rejected(name: str) -> None:
    """Were accepted and printed empty on receipts."""
    with pytest.raises(Rejected) as caught:
        parse_product({**PRICE_ROW, "name": name})
    assert caught.value.reason == "no visible character in name"


@pytest.mark.parametrize("name", ["👨\u200d👩\u200d👧", "a\u200bb", "\u200bחלב", "e\u0301",
                                  "\u202eabc"])
def test_names_with_invisible_characters_among_visible_ones_are_kept(name: str) -> None:
    assert parse_product({**PRICE_ROW, "name": name}).name == name
