"""The Online Retail II loader on crafted files (malformed input) and on the real file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from storefront.baskets import (
    MAX_LINE_QUANTITY,
    PRICE_TOO_HIGH,
    TOO_MANY_UNITS,
    load_baskets,
)
from storefront.catalog import MAX_PRICE_MINOR
from storefront.errors import InvalidInput

HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"


def _write(tmp_path: Path, body: str, gz: bool = False) -> Path:
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    data = (HEADER + body).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_shelf_price_baskets_and_skip_reasons(tmp_path: Path) -> None:
    body = (
        "1,A1,Mug,2,2010-01-01 10:00,1.50,1,UK\n"
        "1,B2,Plate,1,2010-01-01 10:00,2.00,1,UK\n"
        "2,A1,Mug,3,2010-01-01 11:00,1.50,2,UK\n"
        "3,A1,Mug,1,2010-01-01 12:00,1.20,2,UK\n"       # negotiated price
        "C4,A1,Mug,-1,2010-01-01 13:00,1.50,2,UK\n"     # cancellation
        "5,B2,Plate,0,2010-01-01 14:00,2.00,2,UK\n"     # zero quantity
        "6,BANK CHARGES,Fee,1,2010-01-01 15:00,1.00,2,UK\n"  # not a product code
        "7,A1,Mug,1,2010-01-01 16:00,0.001,2,UK\n"      # sub-penny
        "8,A1,Mug,1,2010-01-01 16:00,1.50,2,UK\n"
        "8,A1,Mug,2,2010-01-01 16:00,1.50,2,UK\n"       # same code twice, same price: merged
    )
    loaded = load_baskets(_write(tmp_path, body, gz=True))
    prices = {i.code: i.unit_price_minor for i in loaded.items}
    assert prices == {"A1": 150, "B2": 200}
    by_invoice = {b.invoice: b for b in loaded.baskets}
    assert set(by_invoice) == {"1", "2", "8"}
    assert by_invoice["1"].expected_total_minor == 2 * 150 + 200
    assert by_invoice["8"].lines == (("A1", 3),)
    assert loaded.skipped == {"not at the shelf price": 1, "cancellation": 1,
                              "non-positive quantity or price": 1,
                              "unusable code, quantity or price": 2}
    assert loaded.invoices_read == 8


@pytest.mark.parametrize("body", ["", "1,A1,Mug,x,2010,1.0,1,UK\n"])
def test_files_without_usable_rows_give_no_baskets(tmp_path: Path, body: str) -> None:
    assert load_baskets(_write(tmp_path, body)).baskets == []


def test_missing_column_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Invoice,StockCode\n1,A1\n")
    with pytest.raises(InvalidInput, match="missing column"):
        load_baskets(bad)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_baskets(tmp_path / "nope.csv")


def test_invoices_with_too_many_units_of_a_code_are_skipped(tmp_path: Path) -> None:
    body = (
        "1,A1,Mug,2,2010-01-01 10:00,1.50,1,UK\n"
        "2,A1,Mug,999999999,2010-01-01 10:00,1.50,1,UK\n"       # one huge line
        "3,A1,Mug,99999999999999999999,2010-01-01 10:00,1.50,1,UK\n"  # past 64 bits
        f"4,A1,Mug,{MAX_LINE_QUANTITY},2010-01-01 10:00,1.50,1,UK\n"  # at the bound: kept
        f"5,A1,Mug,{MAX_LINE_QUANTITY},2010-01-01 10:00,1.50,1,UK\n"  # two lines of one
        "5,A1,Mug,1,2010-01-01 10:00,1.50,1,UK\n"                  # code, one unit over
    )
    loaded = load_baskets(_write(tmp_path, body))
    assert {b.invoice for b in loaded.baskets} == {"1", "4"}
    assert loaded.skipped == {TOO_MANY_UNITS: 3}
    assert loaded.invoices_read == 5
    assert max(q for b in loaded.baskets for _, q in b.lines) == MAX_LINE_QUANTITY


# Prices the price parser itself refuses as too large (``storefront.money``) are skipped
# as unusable; those it reads but the catalogue cannot hold, as above its bound.
TOO_LARGE = {PRICE_TOO_HIGH, "unusable code, quantity or price"}


@pytest.mark.parametrize(("price", "reasons"), [
    (f"{MAX_PRICE_MINOR // 100}.01", {PRICE_TOO_HIGH}),
    (str(MAX_PRICE_MINOR), {PRICE_TOO_HIGH}),
    ("1e30", TOO_LARGE),
    ("99999999999999999999999.99", TOO_LARGE),
])
def test_invoices_priced_above_the_catalogue_bound_are_skipped(tmp_path: Path, price: str,
                                                               reasons: set[str]) -> None:
    body = (
        "1,A1,Mug,2,2010-01-01 10:00,1.50,1,UK\n"
        f"2,B2,Plate,1,2010-01-01 10:00,{price},1,UK\n"
        f"3,C3,Ring,1,2010-01-01 10:00,{MAX_PRICE_MINOR // 100},1,UK\n"  # at the bound
    )
    loaded = load_baskets(_write(tmp_path, body))
    assert [b.invoice for b in loaded.baskets] == ["1", "3"]
    assert sum(loaded.skipped.values()) == 1 and set(loaded.skipped) <= reasons
    assert {i.code: i.unit_price_minor for i in loaded.items} == {"A1": 150,
                                                                  "C3": MAX_PRICE_MINOR}


def test_binary_garbage_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(range(256)))
    with pytest.raises(InvalidInput, match="unreadable"):
        load_baskets(path)


def test_real_online_retail_file(data_dir: Path) -> None:
    path = data_dir / "retail" / "online-retail-ii" / "online_retail_II_2009-2010.csv.gz"
    loaded = load_baskets(path)
    prices = {i.code: i.unit_price_minor for i in loaded.items}
    assert len(loaded.baskets) > 1000
    for basket in loaded.baskets[:500]:
        assert basket.expected_total_minor == sum(prices[c] * q for c, q in basket.lines)
    assert loaded.skipped["cancellation"] > 0
