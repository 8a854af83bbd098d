"""Real baskets priced with real promotions from the Israeli price-transparency files.

Store: Shufersal (chain 7290027600007) store 413, snapshot of 2026-08-10. The
expected totals are worked out by hand from the rows of the files (quoted in
the comments); prices include 18 % VAT.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from storefront.catalog import Catalogue
from storefront.catalog_import import import_israeli_catalogue
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.pricing import price_cart, render_receipt_text

SHUFERSAL, STORE, DAY = "7290027600007", "413", date(2026, 8, 10)
SUGAR = "7296073006176"      # סוכר לבן 1 ק"ג שופרסל, 5.50; promo 4551820 "3ב10", min 3, 10.00
TILAPIA = "7290009137439"    # ארגום פילה אמנון, weighed, 39.90/kg; promo 4562715 min 1.50, 37.50
GOUDA = "7290008606950"      # גאודה עשבי תיבול, weighed, 159.00/kg; promo 4570068 min 0.20, 30.00
CHAIR = "7296073395065"      # כסא גיימינג מקצועי טוד, 699.00; club promo 4563011 price 499.00
VINEGAR = "7290018724941"    # חומץ תפוחים צלול, 15.90; promo 4571542 25 % off, until 2026-08-17


@pytest.fixture(scope="module")
def catalogue(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    folder = data_dir / "retail" / "israel-price-transparency"
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('il') / 'sf.db'}")
    upgrade(engine)
    catalogue = Catalogue(sessionmaker(engine, expire_on_commit=False))
    report = import_israeli_catalogue(
        catalogue, prices=folder / "israeli_prices_2026-08-10.csv.gz",
        promos=folder / "israeli_promos_2026-08-10.csv.gz", chain=SHUFERSAL, store=STORE)
    assert report.products_imported == 15_700 and report.promotions_imported > 2000
    return catalogue


def test_names_stay_hebrew_and_internal_codes_are_marked(catalogue: Catalogue) -> None:
    sugar = catalogue.get(SUGAR)
    assert sugar.name == 'סוכר לבן 1 ק"ג שופרסל' and sugar.unit_price_minor == 550
    assert sugar.is_gtin and catalogue.get(TILAPIA).sold_by_weight
    internal = catalogue.get("10181040009")  # Shufersal's own 11-digit code
    assert not internal.is_gtin and internal.name == "חמאת קקאו יחידה"


def test_multi_buy_and_weighed_basket(catalogue: Catalogue) -> None:
    priced = price_cart({SUGAR: 4, TILAPIA: 1800, GOUDA: 250}, catalogue, "ILS", on=DAY)
    # sugar: 3 for 10.00 + 1 x 5.50 = 15.50 (regular 4 x 5.50 = 22.00)
    # tilapia: 37.50 per 1.50 kg = 25.00/kg; 1.800 kg -> 3750 x 1800 / 1500 = 45.00
    #          (regular 39.90 x 1.8 = 71.82)
    # gouda:   30.00 per 0.200 kg = 150.00/kg; 0.250 kg -> 3000 x 250 / 200 = 37.50
    #          (regular 159.00 x 0.25 = 39.75)
    # total 15.50 + 45.00 + 37.50 = 98.00
    assert {line.code: line.payable_minor for line in priced.lines} == {
        SUGAR: 1550, TILAPIA: 4500, GOUDA: 3750}
    assert priced.total_minor == 9800
    assert priced.discount_minor == (2200 - 1550) + (7182 - 4500) + (3975 - 3750)
    # VAT included: 9800 x 18 / 118 = 1494.9 -> 14.95
    assert priced.tax_minor == 1495


def test_under_the_minimum_weight_no_promotion(catalogue: Catalogue) -> None:
    priced = price_cart({TILAPIA: 1000, SUGAR: 2}, catalogue, "ILS", on=DAY)
    # tilapia 1.000 kg < 1.50 kg: 39.90; sugar 2 < 3: 2 x 5.50 = 11.00
    assert priced.total_minor == 3990 + 1100 and priced.promotions == ()


def test_club_only_price_and_percentage_off(catalogue: Catalogue) -> None:
    basket = {CHAIR: 1, VINEGAR: 2}
    member = price_cart(basket, catalogue, "ILS", club_member=True, on=DAY)
    guest = price_cart(basket, catalogue, "ILS", club_member=False, on=DAY)
    # vinegar: 2 x 15.90 = 31.80, 25 % off = 7.95 -> 23.85 for everyone
    # chair: club members 499.00, others 699.00
    assert member.total_minor == 49900 + 2385
    assert guest.total_minor == 69900 + 2385
    # after the vinegar promotion ends (2026-08-17) only the chair keeps its club price
    later = price_cart(basket, catalogue, "ILS", club_member=True, on=date(2026, 8, 18))
    assert later.total_minor == 49900 + 3180


def test_receipt_keeps_the_hebrew_names(catalogue: Catalogue) -> None:
    priced = price_cart({SUGAR: 4, GOUDA: 250}, catalogue, "ILS", on=DAY)
    text = render_receipt_text(priced)
    assert '\u2068סוכר לבן 1 ק"ג שופרסל\u2069' in text
    # sugar 15.50 + gouda 37.50 = 53.00
    assert "\u2068גאודה עשבי תיבול 32%משקל\u2069" in text and text.endswith("53.00 ILS\n")
