"""The Online Retail II loader on crafted files (malformed input) and on the real file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from storefront.baskets import load_baskets
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
