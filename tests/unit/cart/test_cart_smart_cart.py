"""Smart carts: PLU and GS1 decoding (biip), scan/scale pairing, weighed lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from stdnum import ean

from cart.errors import InvalidCommand
from cart.events import CartScaleChanged, CartScanned, WeighedItemAdded
from cart.projections import FlagReason, WeighedLine, cart_contents
from cart.smart_cart import SCALE_TOLERANCE_G, CodeKind, decode_code, reconcile

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
GTIN = "7038010009457"
WEIGHT_LABEL = "2812349007507"  # GS1 Germany: prefix 28, weight 0.750 kg
PRICE_LABEL = "2012345407503"  # GS1 UK: prefix 20, price 7.50 (with price check digit)


def gtin13(body: str) -> str:
    return body + ean.calc_check_digit(body)


def scan(seq: int, code: str, sec: float = 0.0) -> CartScanned:
    return CartScanned(code, "cart-1", seq, T0 + timedelta(seconds=sec))


def scale(seq: int, grams: int, sec: float = 0.0) -> CartScaleChanged:
    return CartScaleChanged(grams, "cart-1", seq, T0 + timedelta(seconds=sec))


def test_plu_codes_follow_ifps_ranges() -> None:
    assert decode_code("4011").kind is CodeKind.PLU
    organic = decode_code("94011")
    assert (organic.plu, organic.organic, organic.weighed) == ("4011", True, True)
    for bad in ("2999", "5000", "84011", "93000x", "12"):
        with pytest.raises(InvalidCommand):
            decode_code(bad)


def test_gtin_and_variable_measure_labels() -> None:
    assert decode_code(GTIN).kind is CodeKind.GTIN
    assert not decode_code(GTIN).weighed
    weight = decode_code(WEIGHT_LABEL, rcn_region="de")
    assert (weight.kind, weight.grams) == (CodeKind.VARIABLE_WEIGHT, 750)
    price = decode_code(PRICE_LABEL, rcn_region="gb")
    assert (price.kind, price.price_minor) == (CodeKind.VARIABLE_PRICE, 750)
    fallback = decode_code("2612345012341", rcn_region="gb")
    assert fallback.kind is CodeKind.STORE_INTERNAL and "biip" in (fallback.note or "")
    with pytest.raises(InvalidCommand, match="check digit|GTIN"):
        decode_code(GTIN[:-1] + "0")
    with pytest.raises(InvalidCommand, match="variable measure"):
        decode_code(gtin13("201234500750"), rcn_region="gb")  # wrong price check digit


def test_scan_confirmed_by_scale_goes_on_the_cart_unconfirmed_ones_are_flagged() -> None:
    events = [scan(1, GTIN), scale(2, 412, 1.5), scan(3, "94011", 20), scale(4, 733, 21),
              scan(5, GTIN, 40), scale(6, 250, 80), scale(7, 3, 90)]
    cart = cart_contents(events)
    assert cart.lines == {GTIN: 1}
    assert cart.weighed == {"94011": WeighedLine(733)}
    reasons = sorted(flag.reason for flag in cart.flags)
    assert reasons == [FlagReason.SCAN_WITHOUT_WEIGHT, FlagReason.WEIGHT_WITHOUT_SCAN]


def test_removal_pairs_with_a_negative_change_and_weight_labels_need_the_weight() -> None:
    label = WEIGHT_LABEL  # 750 g
    events = [scan(1, GTIN), scale(2, 400, 1), scan(3, GTIN, 10), scale(4, -400, 11),
              scan(5, label, 20), scale(6, 750 + SCALE_TOLERANCE_G + 1, 21)]
    cart = cart_contents(events, rcn_region="de")
    assert cart.lines == {} and cart.weighed == {}
    assert {f.reason for f in cart.flags} == {FlagReason.SCAN_WITHOUT_WEIGHT,
                                              FlagReason.WEIGHT_WITHOUT_SCAN}
    ok = cart_contents([scan(5, label, 20), scale(6, 740, 21)], rcn_region="de")
    assert ok.weighed == {label: WeighedLine(750)} and ok.flags == []
    priced = cart_contents([scan(7, PRICE_LABEL), scale(8, 612, 2)], rcn_region="gb")
    assert priced.weighed == {PRICE_LABEL: WeighedLine(612, 750)}


def test_undecodable_scan_is_flagged_not_billed() -> None:
    ops = reconcile([scan(1, "123456"), scale(2, 100, 1)])
    assert sorted(op.reason or "" for op in ops) == ["undecodable_code", "weight_without_scan"]


def test_weighed_item_events_add_up_and_label_prices_are_kept() -> None:
    events = [WeighedItemAdded("4011", 512, "scale-1", 1, T0, 1.0),
              WeighedItemAdded("4011", 300, "scale-1", 2, T0, 1.0),
              WeighedItemAdded(PRICE_LABEL, 800, "scale-1", 3, T0, 1.0, 123)]
    cart = cart_contents(events)
    assert cart.weighed["4011"] == WeighedLine(812)
    assert cart.weighed[PRICE_LABEL] == WeighedLine(800, 123)
    for grams in (0, -5, 50_001):
        with pytest.raises(InvalidCommand, match="grams"):
            WeighedItemAdded("4011", grams, "scale-1", 9, T0, 1.0)
