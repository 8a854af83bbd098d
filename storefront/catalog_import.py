"""Import the Israeli price-transparency files (prices + promotions) as the store's catalogue.

Files: CSV, optionally gzip, UTF-8 with or without BOM, Hebrew headers (see
``storefront.pricing.israel``). One import loads one store: the catalogue is
keyed by product code, so the same barcode priced by two chains cannot live in
one store's catalogue. Products are upserted and the store's promotions are
replaced as a whole, so importing the same files twice leaves the same rows.
A malformed row is counted under its reason and skipped, never fatal; a file
without the needed columns is refused before anything is written.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from storefront.catalog import Catalogue, CatalogueItem
from storefront.errors import InvalidInput
from storefront.pricing.israel import (
    PRICE_COLUMNS,
    PROMO_COLUMNS,
    PromoRow,
    Rejected,
    group_promotions,
    parse_product,
    parse_promotion_row,
)
from storefront.pricing.repository import PromotionRepository

OTHER_STORE = "other chain or store"
Progress = Callable[[int], None]


@dataclass
class ImportReport:
    """Counts of one import; ``*_rejected`` maps reason -> rows."""

    chain_id: str
    store_id: str
    prices_read: int = 0
    products_imported: int = 0
    prices_rejected: Counter[str] = field(default_factory=Counter)
    promo_rows_read: int = 0
    promo_rows_imported: int = 0
    promotions_imported: int = 0
    promos_rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"chain_id": self.chain_id, "store_id": self.store_id,
                "prices_read": self.prices_read, "products_imported": self.products_imported,
                "prices_rejected": dict(self.prices_rejected.most_common()),
                "promo_rows_read": self.promo_rows_read,
                "promo_rows_imported": self.promo_rows_imported,
                "promotions_imported": self.promotions_imported,
                "promos_rejected": dict(self.promos_rejected.most_common()),
                "seconds": round(self.seconds, 2)}


def snapshot_date(path: Path) -> date | None:
    """The ``YYYY-MM-DD`` date in a file name (the day the chain published it), if any."""
    match = re.search(r"(\d{4}-\d{2}-\d{2})", path.name)
    try:
        return date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        return None


def read_rows(path: Path, columns: dict[str, str]) -> Iterator[dict[str, str] | None]:
    """Rows of ``path`` as {our column name: text}; None for a row with a wrong field count.

    Raises:
        InvalidInput: the file cannot be read as UTF-8 CSV or lacks a needed column.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as raw, \
                io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            header = [name.strip() for name in next(reader, [])]
            missing = [hebrew for hebrew in columns.values() if hebrew not in header]
            if missing:
                raise InvalidInput(f"{path.name}: missing columns {missing}")
            index = {ours: header.index(hebrew) for ours, hebrew in columns.items()}
            for fields in reader:
                if len(fields) != len(header):
                    yield None
                    continue
                yield {ours: fields[position] for ours, position in index.items()}
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise InvalidInput(f"{path.name} cannot be read: {exc}") from exc


def choose_store(path: Path, chain: str | None, store: str | None) -> tuple[str, str]:
    """The (chain id, store id) to import: the one given, or the only one in the file.

    Raises:
        InvalidInput: none matches, or several do and no choice was given.
    """
    pairs: Counter[tuple[str, str]] = Counter()
    for row in read_rows(path, PRICE_COLUMNS):
        if row is not None:
            pairs[(row["chain"].strip(), row["store"].strip())] += 1
    matching = sorted(pair for pair in pairs if (chain is None or pair[0] == chain)
                      and (store is None or pair[1] == store))
    if len(matching) == 1:
        return matching[0]
    listing = ", ".join(f"--chain {c} --store {s} ({n} rows)"
                        for (c, s), n in sorted(pairs.items()))
    if not matching:
        raise InvalidInput(f"no rows for chain {chain} store {store}; the file has: {listing}")
    raise InvalidInput(f"the file holds several stores, choose one: {listing}")


def import_israeli_catalogue(catalogue: Catalogue, *, prices: Path, promos: Path | None,
                             chain: str | None = None, store: str | None = None,
                             as_of: date | None = None,
                             progress: Progress | None = None) -> ImportReport:
    """Load one store's prices and promotions into ``catalogue`` (idempotent).

    ``as_of``: promotions that ended before it are skipped as expired (default:
    the date in the price file's name, if any). ``progress`` gets the number of
    rows handled since its last call.

    Raises:
        InvalidInput: unreadable file, missing columns, or no single store chosen.
    """
    started = time.perf_counter()
    if promos is not None:
        for _ in read_rows(promos, PROMO_COLUMNS):  # refuse a bad header before any write
            break
    chain_id, store_id = choose_store(prices, chain, store)
    report = ImportReport(chain_id, store_id)
    items = _read_products(prices, report, progress)
    # The price files carry no age restriction or tax category: those set by an
    # administrator on products already stored survive a re-import.
    catalogue.upsert(items.values(), keep_stored=("age_restricted", "tax_category"))
    report.products_imported = len(items)
    if promos is not None:
        rows = _read_promotions(promos, items, report, as_of or snapshot_date(prices), progress)
        grouped = group_promotions(rows)
        repository = PromotionRepository(catalogue.sessions)
        report.promotions_imported = repository.replace_source(f"{chain_id}:{store_id}", grouped)
        report.promo_rows_imported = len(rows)
    report.seconds = time.perf_counter() - started
    return report


def _this_store(row: dict[str, str] | None, report: ImportReport) -> dict[str, str]:
    """The row if it is well-formed and of the store being imported; raises Rejected."""
    if row is None:
        raise Rejected("wrong number of fields")
    if (row["chain"].strip(), row["store"].strip()) != (report.chain_id, report.store_id):
        raise Rejected(OTHER_STORE)
    return row


def _read_products(path: Path, report: ImportReport,
                   progress: Progress | None) -> dict[str, CatalogueItem]:
    items: dict[str, CatalogueItem] = {}
    for row in read_rows(path, PRICE_COLUMNS):
        report.prices_read += 1
        if progress is not None:
            progress(1)
        try:
            item = parse_product(_this_store(row, report))
            if item.code in items:
                raise Rejected("duplicate barcode")
            items[item.code] = item
        except Rejected as exc:
            report.prices_rejected[exc.reason] += 1
    return items


def _read_promotions(path: Path, items: dict[str, CatalogueItem], report: ImportReport,
                     as_of: date | None, progress: Progress | None) -> list[PromoRow]:
    prefix = f"{report.chain_id}:{report.store_id}"
    rows: list[PromoRow] = []
    seen: set[tuple[str, str]] = set()
    for row in read_rows(path, PROMO_COLUMNS):
        report.promo_rows_read += 1
        if progress is not None:
            progress(1)
        try:
            parsed = parse_promotion_row(_this_store(row, report), items, prefix=prefix,
                                         as_of=as_of)
            if (parsed.promo_id, parsed.code) in seen:
                raise Rejected("duplicate promotion row")
            seen.add((parsed.promo_id, parsed.code))
            rows.append(parsed)
        except Rejected as exc:
            report.promos_rejected[exc.reason] += 1
    return rows
