"""``catalog import --replace-store``: the replaced store's products that the new store's
price file does not list are withdrawn from sale (``products.withdrawn_at``), not sold at
the other store's price. Their rows stay (carts and receipts name them); pricing refuses
them, so an open cart holding one goes to the staffed checkout with the reason; ``PUT
/products/{code}`` puts one back on sale at a new price. A re-import of the same store and
malformed inputs behave as before (SQLite and PostgreSQL). Prices are minor units (agorot).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import Catalogue
from storefront.catalog_import import ImportReport, import_israeli_catalogue
from storefront.cli import app
from storefront.db.engine import make_engine
from storefront.db.migrate import alembic_config, current_revision, head_revision
from storefront.db.models import CatalogueImport, Product, PromotionItem, PromotionRow
from storefront.errors import InvalidInput
from storefront.payments import SimulatedProcessor
from storefront.pricing import price_cart
from storefront.security.client import authenticated
from storefront.settings import Settings

PRICE_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,שם מוצר,יצרן,ארץ ייצור,כמות,יחידת מידה,"
                "יחידת כמות,מחיר (₪),מחיר ליחידה (₪),שקיל,כמות באריזה,מותר הנחה,סטטוס,עודכן")
PROMO_HEADER = ("רשת,מזהה רשת,מזהה חנות,ברקוד,מזהה מבצע,תיאור מבצע,בתוקף עד,כמות מינימום,"
                "מחיר מבצע (₪),שיעור הנחה,מועדון,קופון,סוג הטבה")
CHAIN = "7290000000000"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _price(code: str, name: str, price: str, store: str = "7") -> str:
    return f"רשת,{CHAIN},{store},{code},{name},,IL,1,,,{price},,0,1,1,,"


def _promo(code: str, promo_id: str, store: str = "7") -> str:
    return f"רשת,{CHAIN},{store},{code},{promo_id},מבצע,2031-08-31,1,1.00,,0,0,3"


def _write(path: Path, header: str, rows: list[str]) -> Path:
    text = "\n".join([header, *rows]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _files(tmp_path: Path) -> dict[str, Path]:
    """Store 7 sells bread 1000 (4.00) and milk 1001 (6.00); store 8 bread (4.50) and eggs
    1002 (12.00), not milk; store 9 milk again (7.00)."""
    return {
        "p7": _write(tmp_path / "p7.csv.gz", PRICE_HEADER, [
            _price("1000", "לחם", "4.00"), _price("1001", "חלב", "6.00")]),
        "q7": _write(tmp_path / "q7.csv.gz", PROMO_HEADER, [_promo("1001", "70")]),
        "p8": _write(tmp_path / "p8.csv.gz", PRICE_HEADER, [
            _price("1000", "לחם", "4.50", store="8"),
            _price("1002", "ביצים", "12.00", store="8")]),
        "q8": _write(tmp_path / "q8.csv.gz", PROMO_HEADER, [_promo("1002", "80", store="8")]),
        "p9": _write(tmp_path / "p9.csv.gz", PRICE_HEADER, [
            _price("1001", "חלב", "7.00", store="9")]),
    }


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[Container]:
    """A store selling in ILS (the files' currency), on SQLite or PostgreSQL."""
    c = bootstrap(Settings(data_dir=tmp_path / "state", database_url=database,
                           currency="ILS"),
                  processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    yield c
    c.close()


def _import(catalogue: Catalogue, prices: Path, promos: Path | None = None,
            store: str = "7", **options: object) -> ImportReport:
    return import_israeli_catalogue(catalogue, prices=prices, promos=promos, chain=CHAIN,
                                    store=store, **options)  # type: ignore[arg-type]


def _snapshot(catalogue: Catalogue) -> tuple[list[tuple[object, ...]], ...]:
    with catalogue.sessions() as db:
        return tuple([tuple(row) for row in db.execute(sa.select(table).order_by(*table.c))]
                     for table in (Product.__table__, PromotionRow.__table__,
                                   PromotionItem.__table__, CatalogueImport.__table__))


def _open_cart(c: Container, picks: dict[str, int]) -> str:
    shopper = c.shoppers.register(display_name="Noa", payment_token="tok_noa").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    for seq, (code, qty) in enumerate(picks.items(), start=1):
        c.ingest.record(session_id=sid, kind="picked", product_code=code, quantity=qty,
                        device_id="shelf-1", device_seq=seq, sensor_time=T0)
    return sid


def test_replace_store_withdraws_the_products_the_new_file_does_not_list(
        store: Container, tmp_path: Path) -> None:
    f = _files(tmp_path)
    first = _import(store.catalogue, f["p7"], f["q7"])
    assert first.products_withdrawn == 0
    before = datetime.now(UTC)
    report = _import(store.catalogue, f["p8"], f["q8"], store="8", replace_store=True)
    assert report.replaced_stores == [f"{CHAIN}:7"]
    assert report.products_withdrawn == 1
    assert report.as_dict()["products_withdrawn"] == 1

    milk = store.catalogue.get("1001")  # the row is kept, with the price it had
    assert (milk.name, milk.unit_price_minor, milk.on_sale) == ("חלב", 600, False)
    assert milk.withdrawn_at is not None and milk.withdrawn_at >= before
    with pytest.raises(InvalidInput, match="product 1001 is not on sale.*PUT /products/1001"):
        price_cart({"1001": 1}, store.catalogue, "ILS")
    with pytest.raises(InvalidInput, match="1001 is not on sale"):  # also beside others
        price_cart({"1000": 1, "1001": 2}, store.catalogue, "ILS")

    # Listed in the new file: on sale at the new store's price (and promotion).
    for code in ("1000", "1002"):
        assert store.catalogue.get(code).on_sale
    assert price_cart({"1000": 1}, store.catalogue, "ILS").total_minor == 450
    assert price_cart({"1002": 1}, store.catalogue, "ILS").total_minor == 100

    # A further replacement counts only products still on sale, and a file that lists a
    # withdrawn product puts it back on sale at its price.
    third = _import(store.catalogue, f["p9"], None, store="9", replace_store=True)
    assert third.replaced_stores == [f"{CHAIN}:8"]
    assert third.products_withdrawn == 2  # 1000 and 1002; 1001 was withdrawn already
    assert store.catalogue.get("1001").on_sale
    assert price_cart({"1001": 1}, store.catalogue, "ILS").total_minor == 700
    assert not store.catalogue.get("1000").on_sale and not store.catalogue.get("1002").on_sale


def test_an_open_cart_with_a_withdrawn_product_goes_to_the_staffed_checkout(
        store: Container, tmp_path: Path) -> None:
    f = _files(tmp_path)
    _import(store.catalogue, f["p7"], f["q7"])
    sid = _open_cart(store, {"1000": 1, "1001": 2})  # picked while milk was on sale
    _import(store.catalogue, f["p8"], f["q8"], store="8", replace_store=True)
    # A pick after the withdrawal is still recorded: the shopper holds the item.
    store.ingest.record(session_id=sid, kind="picked", product_code="1001", quantity=1,
                        device_id="shelf-1", device_seq=9, sensor_time=T0)

    out = store.checkout.exit(sid)
    assert out.status == "staffed" and out.receipt_id is None
    assert out.total_minor is None  # nothing was charged at store 7's 6.00
    reason = out.reason or ""
    assert reason.startswith("cart cannot be priced: product 1001 is not on sale"), reason
    assert "PUT /products/1001" in reason
    assert store.read_model.get(sid).staffed_reason == reason
    queued = [entry for entry in store.checkout.staffed_queue() if entry["id"] == sid]
    assert queued and "1001 is not on sale" in str(queued[0]["staffed_reason"])

    # Staff see why the cart cannot be priced until a price is set.
    cart = store.staffed.cart(sid)
    assert cart.total_minor is None
    assert any("1001 is not on sale" in blocker for blocker in cart.blockers), cart.blockers

    # An admin sets this store's price: the cart is priced at it (3 x 6.50 + 4.50).
    client = authenticated(TestClient(create_app(store)), store.security,
                           store.settings.store_id)
    with client:
        r = client.put("/products/1001", json={"code": "1001", "name": "חלב",
                                               "unit_price_minor": 650})
        assert r.status_code == 200, r.text
    cart = store.staffed.cart(sid)
    assert cart.total_minor == 3 * 650 + 450, cart.blockers
    assert not any("not on sale" in blocker for blocker in cart.blockers)


def test_put_product_puts_a_withdrawn_product_back_on_sale(store: Container,
                                                           tmp_path: Path) -> None:
    f = _files(tmp_path)
    _import(store.catalogue, f["p7"], f["q7"])
    _import(store.catalogue, f["p8"], f["q8"], store="8", replace_store=True)
    client = authenticated(TestClient(create_app(store)), store.security,
                           store.settings.store_id)
    with client:
        shown = client.get("/products/1001").json()
        assert shown["unit_price_minor"] == 600 and shown["withdrawn_at"] is not None
        assert client.get("/products/1000").json()["withdrawn_at"] is None
        r = client.put("/products/1001", json={"code": "1001", "name": "חלב 1 ליטר",
                                               "unit_price_minor": 590})
        assert r.status_code == 200, r.text
        assert (r.json()["unit_price_minor"], r.json()["withdrawn_at"]) == (590, None)
        assert client.get("/products/1001").json()["withdrawn_at"] is None
    assert store.catalogue.get("1001").on_sale
    assert price_cart({"1001": 2}, store.catalogue, "ILS").total_minor == 1180

    sid = _open_cart(store, {"1001": 1})
    out = store.checkout.exit(sid)
    assert (out.status, out.total_minor) == ("paid", 590), out


@pytest.mark.parametrize("flag", [False, True])
def test_the_same_store_again_withdraws_nothing(store: Container, tmp_path: Path,
                                                flag: bool) -> None:
    """A re-import of the same store (with or without --replace-store) behaves as before:
    a product its new file leaves out keeps its price and stays on sale."""
    f = _files(tmp_path)
    _import(store.catalogue, f["p7"], f["q7"])
    bread_only = _write(tmp_path / "p7b.csv.gz", PRICE_HEADER, [_price("1000", "לחם", "4.20")])
    report = _import(store.catalogue, bread_only, None, replace_store=flag)
    assert (report.replaced_stores, report.products_withdrawn) == ([], 0)
    milk = store.catalogue.get("1001")
    assert (milk.unit_price_minor, milk.on_sale) == (600, True)
    assert price_cart({"1000": 1, "1001": 1}, store.catalogue, "ILS").total_minor == 420 + 100


def test_malformed_or_refused_imports_change_nothing(store: Container,
                                                      tmp_path: Path) -> None:
    f = _files(tmp_path)
    _import(store.catalogue, f["p7"], f["q7"])
    before = _snapshot(store.catalogue)
    # Another store without --replace-store: refused, nothing withdrawn.
    with pytest.raises(InvalidInput, match=f"{CHAIN}:7.*--replace-store"):
        _import(store.catalogue, f["p8"], f["q8"], store="8")
    assert _snapshot(store.catalogue) == before
    # An unreadable file with --replace-store: refused before anything is written.
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(f["p8"].read_bytes()[:-12])
    with pytest.raises(InvalidInput, match="broken.csv.gz cannot be read"):
        _import(store.catalogue, broken, f["q8"], store="8", replace_store=True)
    assert _snapshot(store.catalogue) == before
    missing = _write(tmp_path / "q-bad.csv", "רשת,מזהה רשת", [])
    with pytest.raises(InvalidInput, match="missing columns"):
        _import(store.catalogue, f["p8"], missing, store="8", replace_store=True)
    assert _snapshot(store.catalogue) == before
    # Malformed rows are skipped and counted as before; a product whose row is malformed
    # is not listed, so it is withdrawn with the others.
    rows = [_price("1000", "לחם", "4.50", store="8"), _price("1001", "חלב", "x", store="8")]
    bad_row = _write(tmp_path / "p8-bad.csv", PRICE_HEADER, rows)
    report = _import(store.catalogue, bad_row, None, store="8", replace_store=True)
    assert report.prices_rejected == {"bad price": 1}
    assert report.prices_rejected_lines == {"bad price": [3]}
    assert (report.products_imported, report.products_withdrawn) == (1, 1)
    assert not store.catalogue.get("1001").on_sale


def test_cli_reports_the_withdrawn_products(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_CURRENCY", "ILS")
    f = _files(tmp_path)
    runner = CliRunner()
    base = ["catalog", "import", "--chain", CHAIN]
    first = runner.invoke(app, [*base, "--store", "7", "--prices", str(f["p7"]),
                                "--promos", str(f["q7"])])
    assert first.exit_code == 0, first.output
    assert "withdrawn" not in first.output
    report = tmp_path / "report.json"
    replaced = runner.invoke(app, [*base, "--store", "8", "--prices", str(f["p8"]),
                                   "--promos", str(f["q8"]), "--replace-store",
                                   "--report", str(report)])
    assert replaced.exit_code == 0, replaced.output
    assert f"retired: store {CHAIN}:7" in replaced.output
    assert "withdrawn: not in the file" in replaced.output
    summary = json.loads(report.read_text(encoding="utf-8"))
    assert (summary["replaced_stores"], summary["products_withdrawn"]) == ([f"{CHAIN}:7"], 1)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = (f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    made = make_engine(url)
    yield made
    made.dispose()


def test_migration_0016_adds_the_column_and_refuses_to_drop_a_withdrawal(
        engine: sa.Engine) -> None:
    command.upgrade(alembic_config(engine), "0015")
    with engine.begin() as db:
        db.execute(sa.text(
            "INSERT INTO products (code, name, unit_price_minor, currency, is_gtin)"
            " VALUES ('1001', 'milk', 600, 'ILS', false)"))
    command.upgrade(alembic_config(engine), "0016")
    with engine.connect() as db:  # a product stored before is on sale
        assert db.execute(sa.text("SELECT withdrawn_at FROM products")).scalar_one() is None
    with engine.begin() as db:
        db.execute(sa.text("UPDATE products SET withdrawn_at = :at"), {"at": T0})
    with pytest.raises(RuntimeError, match="1 product\\(s\\) are withdrawn"):
        command.downgrade(alembic_config(engine), "0015")
    assert current_revision(engine) == "0016"
    with engine.begin() as db:
        db.execute(sa.text("UPDATE products SET withdrawn_at = NULL"))
    command.downgrade(alembic_config(engine), "0015")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("products")}
    assert "withdrawn_at" not in columns and "unit_price_minor" in columns
    command.upgrade(alembic_config(engine), "head")
    assert current_revision(engine) == head_revision()
