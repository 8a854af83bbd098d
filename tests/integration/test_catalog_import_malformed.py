"""Malformed price-transparency files: broken quoting, control characters, corrupt or
truncated gzip, a second store, loose dates. Nothing malformed is imported, the rest of
the file is, and a file that cannot be read changes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from storefront import catalog_import
from storefront.catalog import Catalogue
from storefront.catalog_import import import_israeli_catalogue
from storefront.cli import app
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.db.models import CatalogueImport, Product, PromotionItem, PromotionRow
from storefront.errors import InvalidInput
from storefront.pricing import PromotionRepository, price_cart

PRICE_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,שם מוצר,יצרן,ארץ ייצור,כמות,יחידת מידה,"
                "יחידת כמות,מחיר (₪),מחיר ליחידה (₪),שקיל,כמות באריזה,מותר הנחה,סטטוס,עודכן")
PROMO_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,מזהה מבצע,תיאור מבצע,בתוקף עד,כמות מינימום,"
                "מחיר מבצע (₪),שיעור הנחה,מועדון,קופון,סוג הטבה")
CHAIN = "7290000000000"


def _price(code: str, name: str, price: str, store: str = "7") -> str:
    return f"רשת,{CHAIN},{store},{code},{name},,IL,1,,,{price},,0,1,1,,"


def _promo(code: str, promo_id: str, description: str = "מבצע", until: str = "2031-08-31",
           store: str = "7") -> str:
    return f"רשת,{CHAIN},{store},{code},{promo_id},{description},{until},1,1.00,,0,0,3"


def _write(path: Path, header: str, rows: list[str]) -> Path:
    text = "\n".join([header, *rows]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def catalogue(database: str | None, tmp_path: Path) -> Iterator[Catalogue]:
    engine = make_engine(database or f"sqlite:///{tmp_path / 'sf.db'}")
    if database is None:
        upgrade(engine)
    yield Catalogue(sessionmaker(engine, expire_on_commit=False))
    engine.dispose()


def _snapshot(catalogue: Catalogue) -> tuple[list[tuple[object, ...]], ...]:
    with catalogue.sessions() as db:
        return tuple([tuple(row) for row in db.execute(sa.select(table).order_by(*table.c))]
                     for table in (Product.__table__, PromotionRow.__table__,
                                   PromotionItem.__table__))


def _import(catalogue: Catalogue, prices: Path, promos: Path | None = None,
            store: str = "7", **options: object) -> catalog_import.ImportReport:
    return import_israeli_catalogue(catalogue, prices=prices, promos=promos, chain=CHAIN,
                                    store=store, **options)  # type: ignore[arg-type]


def test_an_unbalanced_quote_rejects_its_line_only(catalogue: Catalogue,
                                                   tmp_path: Path) -> None:
    # The quote opened on line 3 would run on, over the line breaks, to the quote of
    # 'ק"ג' on line 5: one record of 17 fields, named with three lines, priced 7.00.
    prices = _write(tmp_path / "p.csv", PRICE_HEADER, [
        _price("1000", "לחם", "4.00"),
        _price("1001", '"חטיף דבש', "5.00"),
        _price("1002", "מים, 1.5 ליטר", "6.00").replace("מים, 1.5 ליטר", '"מים, 1.5 ליטר"'),
        _price("1003", 'סוכר 1 ק"ג', "7.00"),
        _price("1004", '"שוקולד"x', "8.00"),  # text after a closing quote
        _price("1005", "גבינה", "9.00")])
    report = _import(catalogue, prices)
    assert report.prices_read == 6 and report.products_imported == 4
    assert report.prices_rejected == {"unbalanced quote": 1, "bad quoting": 1}
    assert report.prices_rejected_lines == {"unbalanced quote": [3], "bad quoting": [6]}
    assert {code: item.unit_price_minor for code, item in
            catalogue.find_many(["1000", "1001", "1002", "1003", "1004", "1005"]).items()} == {
        "1000": 400, "1002": 600, "1003": 700, "1005": 900}
    assert catalogue.get("1002").name == "מים, 1.5 ליטר"
    assert catalogue.get("1003").name == 'סוכר 1 ק"ג'


def test_a_line_too_long_is_skipped_and_the_next_imported(catalogue: Catalogue,
                                                          tmp_path: Path) -> None:
    huge = "x" * (catalog_import.MAX_LINE_CHARS + 10)
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [
        _price("1001", huge, "5.00"), _price("1002", "מים", "6.00")])
    report = _import(catalogue, prices)
    assert report.prices_rejected == {"line too long": 1}
    assert report.prices_rejected_lines == {"line too long": [2]}
    assert catalogue.get("1002").unit_price_minor == 600 and catalogue.count() == 1


def test_control_characters_reject_the_row(catalogue: Catalogue, tmp_path: Path) -> None:
    names = ["nul\x00name", "red\x1b[31mRED\x1b[0m", "tab\tname", "line\u2028sep",
             "next\x85line", "csi\x9b31m", "del\x7f"]
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [
        _price("1000", "תקין", "4.00"),
        *(_price(str(1001 + i), name, "5.00") for i, name in enumerate(names))])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, [
        _promo("1000", "1", "3\x00ב10"), _promo("1000", "2", "\x1b]0;pwned\x07"),
        _promo("1000", "3\x00"), _promo("1000", "4", "כשר")])
    report = _import(catalogue, prices, promos)  # no psycopg error on PostgreSQL
    assert report.prices_rejected == {"control character in name": len(names)}
    assert report.products_imported == 1
    assert report.promos_rejected == {"control character in description": 2,
                                      "bad promotion id": 1}
    assert report.promotions_imported == 1
    with catalogue.sessions() as db:
        names = list(db.scalars(sa.select(Product.name)))
        descriptions = list(db.scalars(sa.select(PromotionRow.description)))
    assert (names, descriptions) == (["תקין"], ["כשר"])


def test_valid_until_dates_are_parsed_strictly(catalogue: Catalogue, tmp_path: Path) -> None:
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [_price("1000", "תקין", "4.00")])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, [
        _promo("1000", "1", until="2031-01-01"), _promo("1000", "2", until="2031-01-01 23:59"),
        _promo("1000", "3", until="2031-01-01xyz"), _promo("1000", "4", until="2031-13-45"),
        _promo("1000", "5", until="20310101"), _promo("1000", "6", until="2031-01-01T25:00")])
    report = _import(catalogue, prices, promos)
    assert report.promos_rejected == {"bad valid-until date": 4}
    assert report.promos_rejected_lines == {"bad valid-until date": [4, 5, 6, 7]}
    assert report.promotions_imported == 2


def _corrupt(path: Path) -> Path:
    """``path`` with bytes of its deflate stream's Huffman tables flipped (zlib.error)."""
    data = bytearray(path.read_bytes())
    for offset in range(20, 28):  # after the 10-byte gzip header
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _big_prices(path: Path, price: str = "5.00") -> Path:
    return _write(path, PRICE_HEADER, [_price(str(10_000 + i), f"מוצר {i * 7919}", price)
                                       for i in range(3000)])


def test_corrupt_gzip_is_a_clear_error_and_writes_nothing(catalogue: Catalogue,
                                                          tmp_path: Path) -> None:
    prices = _corrupt(_big_prices(tmp_path / "p.csv.gz"))
    with pytest.raises(zlib.error):
        gzip.decompress(prices.read_bytes())
    with pytest.raises(InvalidInput, match="p.csv.gz cannot be read"):
        _import(catalogue, prices)
    assert catalogue.count() == 0


def test_cli_exits_2_on_a_corrupt_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_CURRENCY", "ILS")
    prices = _corrupt(_big_prices(tmp_path / "p.csv.gz"))
    result = CliRunner().invoke(app, ["catalog", "import", "--prices", str(prices),
                                      "--chain", CHAIN, "--store", "7"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "cannot be read" in result.output and "Traceback" not in result.output


def test_a_truncated_promotion_file_leaves_the_catalogue_as_it_was(
        catalogue: Catalogue, tmp_path: Path) -> None:
    _import(catalogue, _big_prices(tmp_path / "p1.csv.gz"),
            _write(tmp_path / "q1.csv.gz", PROMO_HEADER, [_promo("10000", "1")]))
    before = _snapshot(catalogue)
    promos = _write(tmp_path / "q2.csv.gz", PROMO_HEADER,
                    [_promo(str(10_000 + i), str(i)) for i in range(3000)])
    promos.write_bytes(promos.read_bytes()[: promos.stat().st_size // 2])
    with pytest.raises(InvalidInput, match="q2.csv.gz cannot be read"):
        _import(catalogue, _big_prices(tmp_path / "p2.csv.gz", price="6.00"), promos)
    assert _snapshot(catalogue) == before  # the new prices were not written either


def test_products_and_promotions_are_written_in_one_transaction(
        catalogue: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(self: PromotionRepository, source: str, promotions: object) -> int:
        raise RuntimeError("database went away")

    monkeypatch.setattr(PromotionRepository, "replace_source", failing)
    with pytest.raises(RuntimeError, match="went away"):
        _import(catalogue, _big_prices(tmp_path / "p.csv.gz"),
                _write(tmp_path / "q.csv.gz", PROMO_HEADER, [_promo("10000", "1")]))
    assert catalogue.count() == 0


def _two_stores(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    return (_write(tmp_path / "p7.csv.gz", PRICE_HEADER, [
                _price("1000", "לחם", "4.00"), _price("1001", "חלב", "6.00")]),
            _write(tmp_path / "q7.csv.gz", PROMO_HEADER, [_promo("1000", "70")]),
            _write(tmp_path / "p8.csv.gz", PRICE_HEADER, [
                _price("1000", "לחם", "4.50", store="8"), _price("1002", "ביצים", "12.00",
                                                                  store="8")]),
            _write(tmp_path / "q8.csv.gz", PROMO_HEADER, [_promo("1002", "80", store="8")]))


def test_another_store_is_refused_unless_replace_store(catalogue: Catalogue,
                                                       tmp_path: Path) -> None:
    p7, q7, p8, q8 = _two_stores(tmp_path)
    _import(catalogue, p7, q7)
    before = _snapshot(catalogue)
    for promos in (q8, None):
        with pytest.raises(InvalidInput, match=f"{CHAIN}:7.*--replace-store"):
            _import(catalogue, p8, promos, store="8")
        assert _snapshot(catalogue) == before
    _import(catalogue, p7, q7)  # the same store again is fine
    report = _import(catalogue, p8, q8, store="8", replace_store=True)
    assert report.replaced_stores == [f"{CHAIN}:7"] and report.promotions_imported == 1
    with catalogue.sessions() as db:
        assert db.scalars(sa.select(PromotionRow.source).distinct()).all() == [f"{CHAIN}:8"]
    # store 7's promotion (1000 at 1.00) no longer applies to store 8's price of 4.50
    assert price_cart({"1000": 1}, catalogue, "ILS").total_minor == 450
    assert price_cart({"1002": 1}, catalogue, "ILS").total_minor == 100
    assert catalogue.get("1001").unit_price_minor == 600  # kept, not deleted
    again = _import(catalogue, p8, q8, store="8")
    assert again.replaced_stores == [] and again.promotions_imported == 1


def test_an_import_without_promotions_still_records_its_store(catalogue: Catalogue,
                                                               tmp_path: Path) -> None:
    """Prices only, then another store's prices only: refused as well (the store is
    recorded in catalogue_imports, not only by the promotions it brought)."""
    p7, _, p8, q8 = _two_stores(tmp_path)
    _import(catalogue, p7, None)
    before = _snapshot(catalogue)
    with pytest.raises(InvalidInput, match=f"{CHAIN}:7.*--replace-store"):
        _import(catalogue, p8, None, store="8")
    assert _snapshot(catalogue) == before
    report = _import(catalogue, p8, q8, store="8", replace_store=True)
    assert report.replaced_stores == [f"{CHAIN}:7"]
    with catalogue.sessions() as db:
        assert db.scalars(sa.select(CatalogueImport.source)).all() == [f"{CHAIN}:8"]
    assert _import(catalogue, p8, None, store="8").replaced_stores == []


def test_cli_refuses_another_store_with_exit_2(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_CURRENCY", "ILS")
    p7, q7, p8, q8 = _two_stores(tmp_path)
    runner = CliRunner()
    base = ["catalog", "import", "--chain", CHAIN]
    assert runner.invoke(app, [*base, "--store", "7", "--prices", str(p7),
                               "--promos", str(q7)]).exit_code == 0
    refused = runner.invoke(app, [*base, "--store", "8", "--prices", str(p8),
                                  "--promos", str(q8)])
    assert refused.exit_code == 2 and "--replace-store" in refused.output
    replaced = runner.invoke(app, [*base, "--store", "8", "--prices", str(p8),
                                   "--promos", str(q8), "--replace-store"])
    assert replaced.exit_code == 0, replaced.output
    assert f"retired: store {CHAIN}:7" in replaced.output


def test_real_store_file_with_an_unbalanced_quote(data_dir: Path, tmp_path: Path) -> None:
    """Shufersal store 413's rows of the real price file, a quote put before the name of
    data line 20: that line alone is rejected, the 15,699 others imported as without it."""
    source = data_dir / "retail" / "israel-price-transparency" / "israeli_prices_2026-08-10.csv.gz"
    with gzip.open(source, "rt", encoding="utf-8-sig", newline="") as handle:
        lines = handle.read().splitlines()
    store = [line for line in lines[1:] if line.split(",")[1:3] == ["7290027600007", "413"]]
    fields = store[19].split(",")
    fields[4] = '"' + fields[4]
    broken = [*store[:19], ",".join(fields), *store[20:]]
    results = []
    for name, rows in (("clean.csv", store), ("quote.csv", broken)):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        catalogue = Catalogue(sessionmaker(engine, expire_on_commit=False))
        report = import_israeli_catalogue(catalogue, prices=_write(tmp_path / name, lines[0],
                                                                   rows),
                                          promos=None, chain="7290027600007", store="413")
        results.append((report, _snapshot(catalogue)[0]))
        engine.dispose()
    (clean, clean_rows), (quote, quote_rows) = results
    assert (clean.prices_read, clean.products_imported) == (15_700, 15_700)
    assert (quote.prices_read, quote.products_imported) == (15_700, 15_699)
    assert quote.prices_rejected == {"unbalanced quote": 1}
    assert quote.prices_rejected_lines == {"unbalanced quote": [21]}
    assert quote_rows == [row for row in clean_rows if row[0] != fields[3]]


def test_put_products_refuses_what_the_import_refuses(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from storefront.api.app import create_app
    from storefront.bootstrap import bootstrap
    from storefront.payments import SimulatedProcessor
    from storefront.security.client import authenticated
    from storefront.settings import Settings

    refused = [("a\x85b", "control characters"), ("a\x9b31mb", "control characters"),
               ("a\u2028b", "control characters"), ("a\x00b", "control characters"),
               ("   ", "only whitespace"), ("\u3000", "only whitespace")]
    container = bootstrap(Settings(data_dir=tmp_path / "store", database_url=None),
                          processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    try:
        with authenticated(TestClient(create_app(container)), container.security,
                           container.settings.store_id) as client:
            for name, reason in refused:
                r = client.put("/products/N1", json={"code": "N1", "name": name,
                                                     "unit_price_minor": 100})
                assert r.status_code == 422, r.text
                assert r.json()["error"] == "invalid_request"
                assert reason in r.json()["reason"], r.json()
            ok = client.put("/products/N1", json={"code": "N1", "name": 'סוכר 1 ק"ג',
                                                  "unit_price_minor": 100})
            assert ok.status_code == 200, ok.text
    finally:
        container.close()


def test_blank_lines_are_skipped_not_counted(catalogue: Catalogue, tmp_path: Path) -> None:
    """A blank line (between rows, at the end, CRLF, spaces only) was counted as 'wrong
    number of fields'; the line numbers of the lines after it are kept."""
    prices = _write(tmp_path / "p.csv", PRICE_HEADER, [
        _price("1000", "לחם", "4.00"), "", "\r", "   ", _price("1001", '"חלב', "5.00"),
        _price("1002", "מים", "6.00"), "", ""])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, ["", _promo("1000", "1"), ""])
    report = _import(catalogue, prices, promos)
    assert report.prices_read == 3 and report.products_imported == 2
    assert report.prices_rejected == {"unbalanced quote": 1}
    assert report.prices_rejected_lines == {"unbalanced quote": [6]}
    assert (report.promo_rows_read, report.promotions_imported) == (1, 1)
    assert not report.promos_rejected


def test_names_with_no_visible_character_are_rejected(catalogue: Catalogue,
                                                      tmp_path: Path) -> None:
    """Names of only invisible characters (format characters, whitespace) were imported
    and printed empty on receipts; invisible characters between visible ones are kept."""
    invisible = ["\u200b", "\u200d\u200d", "\ufeff", "\u00ad", "\u202e", "\u200b \u2060"]
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [
        *(_price(str(1000 + i), name, "5.00") for i, name in enumerate(invisible)),
        _price("2000", "👨\u200d👩\u200d👧", "4.00"), _price("2001", "a\u200bb", "4.00")])
    report = _import(catalogue, prices)
    assert report.prices_rejected == {"no visible character in name": len(invisible)}
    assert report.prices_rejected_lines == {
        "no visible character in name": list(range(2, 2 + len(invisible)))}
    assert sorted(catalogue.find_many(["2000", "2001", "1000"])) == ["2000", "2001"]
    assert catalogue.get("2000").name == "👨\u200d👩\u200d👧"


def test_a_promotion_id_like_a_generated_one_does_not_crash_the_import(
        catalogue: Catalogue, tmp_path: Path) -> None:
    """Ids X, X (other terms) and X#2: the second X was also given X#2 (IntegrityError
    traceback); every promotion is now stored under its own id."""
    prices = _write(tmp_path / "p.csv.gz", PRICE_HEADER, [
        _price("1000", "לחם", "4.00"), _price("1001", "חלב", "6.00")])
    promos = _write(tmp_path / "q.csv.gz", PROMO_HEADER, [
        _promo("1000", "X"), _promo("1001", "X").replace(",1,1.00,", ",1,2.00,"),
        _promo("1000", "X#2").replace(",1,1.00,", ",1,3.00,")])
    report = _import(catalogue, prices, promos)
    assert (report.promo_rows_imported, report.promotions_imported) == (3, 3)
    with catalogue.sessions() as db:
        stored = dict(db.execute(sa.select(PromotionItem.promotion_id,
                                           PromotionItem.code)).all())
    prefix = f"{CHAIN}:7:"
    assert {key.removeprefix(prefix): code for key, code in stored.items()} == {
        "X": "1000", "X#3": "1001", "X#2": "1000"}
    assert _import(catalogue, prices, promos).promotions_imported == 3  # idempotent


def test_concurrent_imports_of_two_stores_do_not_mix(catalogue: Catalogue, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Store 8 imported while store 7's import is inside its transaction: both used to
    pass the 'another store' check (PostgreSQL, READ COMMITTED, no lock) and the
    catalogue held both stores' promotions. The second now waits for the first and is
    refused."""
    p7, q7, p8, q8 = _two_stores(tmp_path)
    inside, release = threading.Event(), threading.Event()
    upsert, calls = Catalogue.upsert, []

    def held(self: Catalogue, *args: object, **kwargs: object) -> object:
        calls.append(self)
        if len(calls) == 1:  # the first import, inside its transaction, after the check
            inside.set()
            assert release.wait(30)
        return upsert(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalogue, "upsert", held)
    outcomes: dict[str, object] = {}

    def run(store: str, prices: Path, promos: Path) -> None:
        try:
            outcomes[store] = _import(catalogue, prices, promos, store=store)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
            outcomes[store] = exc

    first = threading.Thread(target=run, args=("7", p7, q7))
    first.start()
    try:
        assert inside.wait(30)
        second = threading.Thread(target=run, args=("8", p8, q8))
        second.start()
        second.join(1.0)
        assert second.is_alive()  # waiting for the first import's transaction
    finally:
        release.set()
        first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert isinstance(outcomes["7"], catalog_import.ImportReport)
    assert isinstance(outcomes["8"], InvalidInput), outcomes["8"]
    assert "--replace-store" in str(outcomes["8"])
    with catalogue.sessions() as db:
        assert db.scalars(sa.select(PromotionRow.source).distinct()).all() == [f"{CHAIN}:7"]
    assert catalogue.get("1000").unit_price_minor == 400
    assert "1002" not in catalogue.find_many(["1002"])
