"""Importing price-transparency files: malformed rows, missing columns, idempotence, the CLI."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from storefront.catalog import Catalogue
from storefront.catalog_import import import_israeli_catalogue
from storefront.cli import app
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.db.models import Product, PromotionItem, PromotionRow
from storefront.errors import InvalidInput
from storefront.pricing import price_cart

PRICE_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,שם מוצר,יצרן,ארץ ייצור,כמות,יחידת מידה,"
                "יחידת כמות,מחיר (₪),מחיר ליחידה (₪),שקיל,כמות באריזה,מותר הנחה,סטטוס,עודכן")
PRICES = [
    "רשת,7290000000000,7,7290018724941,חומץ תפוחים,,IL,1,,ליטר,15.9,15.9,0,1,1,,",
    "רשת,7290000000000,7,2094,תפוח ענה,,IL,1,,קילוגרם,7.9,7.9,1,1,1,,",
    "רשת,7290000000000,7,7290000000007,\"מים, 1.5 ליטר\",,IL,1,,ליטר,3.5,3.5,0,1,1,,",
    "רשת,7290000000000,7,7290000000014,מחיר שבור,,IL,1,,,abc,,0,1,1,,",
    "רשת,7290000000000,7,7290000000021,מחיר שלילי,,IL,1,,,-4,,0,1,1,,",
    "רשת,7290000000000,7,7290000000038,שורה קצרה",
    "רשת,7290000000000,8,7290000000045,חנות אחרת,,IL,1,,,9.9,,0,1,1,,",
]
PROMO_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,מזהה מבצע,תיאור מבצע,בתוקף עד,כמות מינימום,"
                "מחיר מבצע (₪),שיעור הנחה,מועדון,קופון,סוג הטבה")
PROMOS = [
    "רשת,7290000000000,7,7290000000007,11,3 ב 9,2026-08-31,3,9.00,,0,0,10",
    "רשת,7290000000000,7,7290018724941,12,25% הנחה,2026-08-31,1,,25,0,0,2",
    "רשת,7290000000000,7,2094,13,תפוח 5.90 לקג,2026-08-31,0.010,5.90,,1,0,3",
    "רשת,7290000000000,7,7290000000007,14,כמות שלילית,2026-08-31,-3,9.00,,0,0,10",
    "רשת,7290000000000,7,9999999999994,15,מוצר לא ידוע,2026-08-31,1,1.00,,0,0,3",
    "רשת,7290000000000,7,7290018724941,16,קופון,2026-08-31,1,1.00,,0,1,3",
    "רשת,7290000000000,7,7290018724941,17,פג תוקף,2026-08-01,1,1.00,,0,0,3",
]


def _write(path: Path, header: str, rows: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8-sig", newline="") as handle:
        handle.write("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    engine = make_engine(f"sqlite:///{tmp_path / 'sf.db'}")
    upgrade(engine)
    return Catalogue(sessionmaker(engine, expire_on_commit=False))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return (_write(tmp_path / "prices_2026-08-10.csv.gz", PRICE_HEADER, PRICES),
            _write(tmp_path / "promos_2026-08-10.csv.gz", PROMO_HEADER, PROMOS))


def _snapshot(catalogue: Catalogue) -> tuple[list[tuple[object, ...]], ...]:
    with catalogue.sessions() as db:
        return tuple([tuple(row) for row in db.execute(sa.select(table).order_by(*table.c))]
                     for table in (Product.__table__, PromotionRow.__table__,
                                   PromotionItem.__table__))


def test_malformed_rows_are_counted_by_reason_and_good_rows_priced(
        catalogue: Catalogue, files: tuple[Path, Path]) -> None:
    report = import_israeli_catalogue(catalogue, prices=files[0], promos=files[1],
                                      chain="7290000000000", store="7")
    assert (report.prices_read, report.products_imported) == (7, 3)
    assert report.prices_rejected == {"bad price": 1, "non-positive price": 1,
                                      "wrong number of fields": 1, "other chain or store": 1}
    assert (report.promo_rows_read, report.promo_rows_imported) == (7, 3)
    assert report.promos_rejected == {"negative minimum quantity": 1, "unknown product": 1,
                                      "needs a coupon": 1, "expired": 1}
    water = catalogue.get("7290000000007")
    assert water.name == "מים, 1.5 ליטר" and water.unit_price_minor == 350
    priced = price_cart({"7290000000007": 4, "7290018724941": 2, "2094": 1500}, catalogue,
                        "ILS", club_member=True, on=date(2026, 8, 10))
    # water: 3 for 9.00 + 1 x 3.50 = 12.50; vinegar: 2 x 15.90 = 31.80 - 25 % (7.95) = 23.85;
    # apples (club): 1.5 kg x 5.90 = 8.85 instead of 1.5 x 7.90 = 11.85
    assert priced.total_minor == 1250 + 2385 + 885
    with pytest.raises(Exception, match="not in the catalogue"):
        price_cart({"7290000000045": 1}, catalogue, "ILS")


def test_reimport_is_idempotent(catalogue: Catalogue, files: tuple[Path, Path]) -> None:
    first = import_israeli_catalogue(catalogue, prices=files[0], promos=files[1],
                                     chain="7290000000000", store="7")
    before = _snapshot(catalogue)
    second = import_israeli_catalogue(catalogue, prices=files[0], promos=files[1],
                                      chain="7290000000000", store="7")
    assert _snapshot(catalogue) == before and len(before[1]) == 3
    first.seconds = second.seconds = 0.0
    assert first == second


def test_reimport_keeps_an_age_restriction_and_tax_category_set_by_an_administrator(
        catalogue: Catalogue, files: tuple[Path, Path]) -> None:
    import_israeli_catalogue(catalogue, prices=files[0], promos=files[1],
                             chain="7290000000000", store="7")
    vinegar = catalogue.get("7290018724941")
    catalogue.merge(vinegar.code, vinegar.name, vinegar.unit_price_minor, vinegar.currency,
                    age_restricted=True, tax_category="zero")
    import_israeli_catalogue(catalogue, prices=files[0], promos=files[1],
                             chain="7290000000000", store="7")
    again = catalogue.get("7290018724941")
    assert (again.age_restricted, again.tax_category) == (True, "zero")
    assert again.unit_price_minor == 1590  # the file's price is still taken
    assert catalogue.get("7290000000007").age_restricted is False  # new rows: defaults
    with pytest.raises(ValueError, match="not a product flag"):
        catalogue.upsert([again], keep_stored=("unit_price_minor",))


def test_missing_columns_and_ambiguous_stores_are_refused_before_writing(
        catalogue: Catalogue, files: tuple[Path, Path], tmp_path: Path) -> None:
    broken = _write(tmp_path / "broken.csv.gz", PRICE_HEADER.replace("מחיר (₪)", "price"),
                    PRICES)
    with pytest.raises(InvalidInput, match="missing columns"):
        import_israeli_catalogue(catalogue, prices=broken, promos=None)
    bad_promos = _write(tmp_path / "bad_promos.csv.gz", PROMO_HEADER.replace("קופון", "x"), [])
    with pytest.raises(InvalidInput, match="missing columns"):
        import_israeli_catalogue(catalogue, prices=files[0], promos=bad_promos,
                                 chain="7290000000000", store="7")
    with pytest.raises(InvalidInput, match="several stores"):
        import_israeli_catalogue(catalogue, prices=files[0], promos=None)
    with pytest.raises(InvalidInput, match="no rows"):
        import_israeli_catalogue(catalogue, prices=files[0], promos=None, chain="1")
    not_gzip = tmp_path / "bad.csv.gz"
    not_gzip.write_bytes(b"\x00\x01 not gzip")
    with pytest.raises(InvalidInput, match="cannot be read"):
        import_israeli_catalogue(catalogue, prices=not_gzip, promos=None)
    assert catalogue.count() == 0


def test_cli_imports_and_prints_the_summary(files: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_CURRENCY", "ILS")
    args = ["catalog", "import", "--prices", str(files[0]), "--promos", str(files[1]),
            "--chain", "7290000000000", "--store", "7", "--report", str(tmp_path / "r.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rejected: bad price" in result.output and "needs a coupon" in result.output
    assert '"products_imported": 3' in (tmp_path / "r.json").read_text(encoding="utf-8")
    ambiguous = CliRunner().invoke(app, ["catalog", "import", "--prices", str(files[0])])
    assert ambiguous.exit_code == 2 and "several stores" in ambiguous.output


def _price_row(code: str, price: str) -> str:
    return f"רשת,7290000000000,7,{code},מוצר {code},,IL,1,,,{price},,0,1,1,,"


def _promo_row(promo_id: str, min_qty: str, price: str, rate: str, reward: str) -> str:
    return (f"רשת,7290000000000,7,1001,{promo_id},מבצע,2026-08-31,{min_qty},{price},{rate},"
            f"0,0,{reward}")


def test_prices_must_be_plain_decimals_up_to_the_catalogue_maximum(
        catalogue: Catalogue, tmp_path: Path) -> None:
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [
        _price_row("1001", "12.90"), _price_row("1002", "10000000.00"),  # the maximum
        _price_row("1003", "1e30"), _price_row("1004", "1e3"), _price_row("1005", "nan"),
        _price_row("1006", "-Infinity"), _price_row("1007", "1_000"),
        _price_row("1008", "99999999999"), _price_row("1009", "10000000.01"),
        _price_row("1010", "-5")])
    report = import_israeli_catalogue(catalogue, prices=prices, promos=None,
                                      chain="7290000000000", store="7")
    assert report.products_imported == 2
    assert report.prices_rejected == {"bad price": 5, "price above the maximum": 2,
                                      "non-positive price": 1}
    assert catalogue.get("1001").unit_price_minor == 1290
    assert catalogue.get("1002").unit_price_minor == 10**9


def test_promotion_numbers_must_be_plain_bounded_decimals(
        catalogue: Catalogue, tmp_path: Path) -> None:
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [_price_row("1001", "20.00")])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, [
        _promo_row("1", "1", "15.00", "", "3"),
        _promo_row("2", "1", "1e30", "", "3"), _promo_row("3", "1", "1e3", "", "3"),
        _promo_row("4", "1", "99999999999", "", "3"),
        _promo_row("5", "3", "1e30", "", "10"),
        _promo_row("6", "1e30", "1.00", "", "3"), _promo_row("7", "99999999999", "1.00", "", "3"),
        _promo_row("8", "1", "", "1e30", "2"), _promo_row("9", "1", "", "1e1", "2"),
        _promo_row("10", "1", "", "nan", "2"), _promo_row("11", "inf", "", "10", "2")])
    report = import_israeli_catalogue(catalogue, prices=prices, promos=promos,
                                      chain="7290000000000", store="7")
    assert (report.promo_rows_read, report.promo_rows_imported) == (11, 1)
    assert report.promos_rejected == {"bad promotion price": 3,
                                      "promotion price above the maximum": 1,
                                      "bad minimum quantity": 2,
                                      "minimum quantity too large": 1,
                                      "bad discount rate": 3}


def test_cli_counts_an_absurd_price_instead_of_crashing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_CURRENCY", "ILS")
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER,
                    [_price_row("1001", "20.00"), _price_row("1002", "1e30")])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, [_promo_row("2", "1", "1e30", "", "3")])
    result = CliRunner().invoke(app, ["catalog", "import", "--prices", str(prices), "--promos",
                                      str(promos), "--chain", "7290000000000", "--store", "7"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "rejected: bad price" in result.output
    assert "rejected: bad promotion price" in result.output


def test_find_many_leaves_unknown_codes_out_where_get_many_refuses(
        catalogue: Catalogue) -> None:
    from storefront.catalog import make_item
    from storefront.errors import UnknownProduct

    catalogue.upsert([make_item("TEA", "Tea", 150, "GBP"), make_item("JAM", "Jam", 300, "GBP")])
    assert set(catalogue.find_many(["TEA", "NOPE", "JAM", "TEA"])) == {"TEA", "JAM"}
    assert catalogue.find_many([]) == {}
    with pytest.raises(UnknownProduct, match="'NOPE'"):
        catalogue.get_many(["TEA", "NOPE"])
