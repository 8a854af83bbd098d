"""Import the Israeli price-transparency files (prices + promotions) as the store's catalogue.

Files: CSV, optionally gzip, UTF-8 with or without BOM, Hebrew headers (see
``storefront.pricing.israel``), one record per line. One import loads one store:
the catalogue is keyed by product code, so the same barcode priced by two chains
cannot live in one store's catalogue. Products are upserted and the store's
promotions are replaced as a whole, so importing the same files twice leaves the
same rows.

Malformed lines are counted under their reason, with their line numbers (the header
is line 1; the first ``LINES_KEPT`` per reason), and skipped, never fatal: a line
that does not parse on its own (an unbalanced quote, i.e. a field that would run on
over the following lines, or text after a closing quote), a field count other than
the header's, a line longer than ``MAX_LINE_CHARS``, and the row-level reasons of
``storefront.pricing.israel`` (control characters in a name or description
included, and a name with no visible character). The lines after a malformed one are
read as usual. Blank lines (empty or only whitespace) are skipped, not counted.

Nothing is written until both files have been read in full: a file that cannot be
read (not gzip, corrupt or truncated compressed data, not UTF-8, missing columns)
is refused with InvalidInput and the database is left as it was. Products,
promotions and the retirement of a previous store's promotions are then written in
one transaction.

Every import records its store (``chain:store``) in ``catalogue_imports``, promotions
or none (imports made before that table, migration 0014, are known by the ``source`` of
the promotions they brought). An import of another chain or store is refused while the
catalogue holds a previous store's import, unless ``replace_store`` is given: that
store's promotions are then deleted with the import and its record replaced, so only
the new store's promotions apply. The previous store's products are not deleted (open
carts, receipts and disputes name products by code): those in the new file take its
name and price, and every other product on sale is withdrawn from sale
(``products.withdrawn_at``, counted in the report's ``products_withdrawn``), as its price
is the other store's: pricing refuses it, so a cart holding it goes to the staffed
checkout with the reason instead of being charged that price, until
``PUT /products/{code}`` sets its price (or an import lists it) and puts it back on sale.
An import of the same store (``replace_store`` or not) withdraws nothing.

Imports into one database run one at a time: the write transaction first takes a lock
(:func:`_serialise_imports`) and only then checks for another store, so two stores
imported at once cannot both pass the check; the second waits and is refused.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.catalog import Catalogue, CatalogueItem
from storefront.db.models import CatalogueImport, PromotionRow
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
from storefront.pricing.model import Promotion
from storefront.pricing.repository import PromotionRepository

OTHER_STORE = "other chain or store"
MAX_LINE_CHARS = 65_536
"""The longest line read (characters, line break included); the files' longest is under
1,000. A longer line is skipped as malformed, read in pieces of this size."""
LINES_KEPT = 10
"""Line numbers kept in the report per rejection reason (the first ones)."""
_STORE_ID = re.compile(r"[0-9A-Za-z._-]{1,20}")
"""A chain or store id that can be imported (the files' are digits): it makes the
promotions' source ``chain:store`` and their ids, which must fit their columns."""
_IMPORTED_SOURCE = re.compile(r"[0-9A-Za-z._-]{1,20}:[0-9A-Za-z._-]{1,20}")
_IMPORT_LOCK_KEY = 0x1A7A10C  # arbitrary PostgreSQL advisory-lock key of catalogue imports
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Record:
    """One line of a file: ``line`` its number (the header is line 1) and ``fields``
    ({our column name: text}), or ``fields`` None and ``problem`` (a short reason) when
    the line is malformed."""

    line: int
    fields: dict[str, str] | None
    problem: str = ""


@dataclass
class ImportReport:
    """Counts of one import; ``*_rejected`` maps reason -> rows, ``*_rejected_lines``
    reason -> the first ``LINES_KEPT`` line numbers (not kept for other stores' rows);
    ``replaced_stores``: the ``chain:store`` whose promotions this import retired;
    ``products_withdrawn``: products on sale that such an import withdrew from sale
    because its file does not list them (0 when it replaced no store)."""

    chain_id: str
    store_id: str
    prices_read: int = 0
    products_imported: int = 0
    prices_rejected: Counter[str] = field(default_factory=Counter)
    prices_rejected_lines: dict[str, list[int]] = field(default_factory=dict)
    promo_rows_read: int = 0
    promo_rows_imported: int = 0
    promotions_imported: int = 0
    promos_rejected: Counter[str] = field(default_factory=Counter)
    promos_rejected_lines: dict[str, list[int]] = field(default_factory=dict)
    replaced_stores: list[str] = field(default_factory=list)
    products_withdrawn: int = 0
    seconds: float = 0.0

    @property
    def source(self) -> str:
        """``chain:store``, the source of the promotions this import stores."""
        return f"{self.chain_id}:{self.store_id}"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {"chain_id": self.chain_id, "store_id": self.store_id,
                "prices_read": self.prices_read, "products_imported": self.products_imported,
                "prices_rejected": dict(self.prices_rejected.most_common()),
                "prices_rejected_lines": self.prices_rejected_lines,
                "promo_rows_read": self.promo_rows_read,
                "promo_rows_imported": self.promo_rows_imported,
                "promotions_imported": self.promotions_imported,
                "promos_rejected": dict(self.promos_rejected.most_common()),
                "promos_rejected_lines": self.promos_rejected_lines,
                "replaced_stores": self.replaced_stores,
                "products_withdrawn": self.products_withdrawn,
                "seconds": round(self.seconds, 2)}


def _count(rejected: Counter[str], lines: dict[str, list[int]], reason: str,
           line: int) -> None:
    """Count one rejected row under ``reason``, keeping its line number (see LINES_KEPT)."""
    rejected[reason] += 1
    if reason != OTHER_STORE:
        kept = lines.setdefault(reason, [])
        if len(kept) < LINES_KEPT:
            kept.append(line)


def snapshot_date(path: Path) -> date | None:
    """The ``YYYY-MM-DD`` date in a file name (the day the chain published it), if any."""
    match = re.search(r"(\d{4}-\d{2}-\d{2})", path.name)
    try:
        return date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        return None


def read_rows(path: Path, columns: dict[str, str]) -> Iterator[Record]:
    """The data lines of ``path`` as records of ``columns`` ({our name: Hebrew header}).

    Each line is parsed on its own, so a quote left open cannot swallow the lines after
    it: such a line, one with another field count than the header's or longer than
    ``MAX_LINE_CHARS`` is a record with ``fields`` None and its ``problem``.

    Raises:
        InvalidInput: the file cannot be read (not gzip, corrupt or truncated compressed
            data, not UTF-8) or its header lacks a needed column or does not parse;
            raised when reached, so read the file to its end before writing anything.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as raw, \
                io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            lines = _lines(text)
            header = _header(path, next(lines, (1, "")))
            missing = [hebrew for hebrew in columns.values() if hebrew not in header]
            if missing:
                raise InvalidInput(f"{path.name}: missing columns {missing}")
            index = {ours: header.index(hebrew) for ours, hebrew in columns.items()}
            for number, line in lines:
                if line is not None and not line.strip():
                    continue  # a blank line (e.g. at the end of a file) is no record
                yield _record(number, line, len(header), index)
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"{path.name} cannot be read: {exc}") from exc


def _lines(text: io.TextIOBase) -> Iterator[tuple[int, str | None]]:
    """(number from 1, line with its line break) of ``text``; the line is None when it is
    longer than ``MAX_LINE_CHARS`` (it is read to its end in pieces and dropped)."""
    number = 0
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) <= MAX_LINE_CHARS:
            yield number, line
            continue
        while line and not line.endswith(("\n", "\r")):
            line = text.readline(MAX_LINE_CHARS)
        yield number, None


def _split(line: str) -> list[str]:
    """The fields of one line (RFC 4180 quoting, strict). Raises csv.Error when a quote
    is left open or text follows a closing quote."""
    return next(csv.reader((line,), strict=True), [])


def _header(path: Path, first: tuple[int, str | None]) -> list[str]:
    """The column names of the first line (stripped). Raises InvalidInput when it is too
    long or does not parse."""
    line = first[1]
    if line is None:
        raise InvalidInput(f"{path.name}: the header line is too long")
    try:
        return [name.strip() for name in _split(line)]
    except csv.Error as exc:
        raise InvalidInput(f"{path.name}: bad header line: {exc}") from exc


def _record(number: int, line: str | None, width: int, index: dict[str, int]) -> Record:
    """The record of data line ``number`` (see :func:`read_rows`)."""
    if line is None:
        return Record(number, None, "line too long")
    try:
        fields = _split(line)
    except csv.Error as exc:
        unclosed = "unexpected end of data" in str(exc)
        return Record(number, None, "unbalanced quote" if unclosed else "bad quoting")
    if len(fields) != width:
        return Record(number, None, "wrong number of fields")
    return Record(number, {ours: fields[position] for ours, position in index.items()})


def choose_store(path: Path, chain: str | None, store: str | None) -> tuple[str, str]:
    """The (chain id, store id) to import: the one given, or the only one in the file.

    Only ids of 1-20 letters, digits, '.', '_' or '-' count (the files' are digits);
    malformed lines are left out.

    Raises:
        InvalidInput: none matches, or several do and no choice was given; the file
            cannot be read (see :func:`read_rows`).
    """
    pairs: Counter[tuple[str, str]] = Counter()
    for record in read_rows(path, PRICE_COLUMNS):
        if record.fields is not None:
            pair = (record.fields["chain"].strip(), record.fields["store"].strip())
            if all(_STORE_ID.fullmatch(part) for part in pair):
                pairs[pair] += 1
    matching = sorted(pair for pair in pairs if (chain is None or pair[0] == chain)
                      and (store is None or pair[1] == store))
    if len(matching) == 1:
        return matching[0]
    listing = ", ".join(f"--chain {c} --store {s} ({n} rows)"
                        for (c, s), n in sorted(pairs.items())) or "no well-formed row"
    if not matching:
        raise InvalidInput(f"no rows for chain {chain} store {store}; the file has: {listing}")
    raise InvalidInput(f"the file holds several stores, choose one: {listing}")


def import_israeli_catalogue(catalogue: Catalogue, *, prices: Path, promos: Path | None,
                             chain: str | None = None, store: str | None = None,
                             as_of: date | None = None, progress: Progress | None = None,
                             replace_store: bool = False) -> ImportReport:
    """Load one store's prices and promotions into ``catalogue`` (idempotent).

    ``as_of``: promotions that ended before it are skipped as expired (default:
    the date in the price file's name, if any). ``progress`` gets the number of
    rows handled since its last call. ``replace_store``: allow another chain or store
    than the one imported before, retiring its promotions and withdrawing from sale the
    products on sale that the file does not list (see the module docstring).
    Both files are read in full before anything is written, in one transaction.

    Raises:
        InvalidInput: unreadable file, missing columns, no single store chosen, or
            another store imported before and ``replace_store`` not given; nothing is
            written then.
    """
    started = time.perf_counter()
    if promos is not None:
        for _ in read_rows(promos, PROMO_COLUMNS):  # refuse a bad header early
            break
    chain_id, store_id = choose_store(prices, chain, store)
    report = ImportReport(chain_id, store_id)
    _previous_stores(catalogue.sessions, report.source, replace_store)  # refuse early
    items = _read_products(prices, report, progress)
    grouped = None
    if promos is not None:
        rows = _read_promotions(promos, items, report, as_of or snapshot_date(prices), progress)
        grouped = group_promotions(rows)
        report.promo_rows_imported = len(rows)
    _write(catalogue, report, items, grouped, replace_store)
    report.seconds = time.perf_counter() - started
    return report


def _write(catalogue: Catalogue, report: ImportReport, items: dict[str, CatalogueItem],
           promotions: list[Promotion] | None, replace_store: bool) -> None:
    """Retire a previous store's promotions (if allowed), upsert ``items``, withdraw from
    sale the products a replaced store left that ``items`` does not list, and replace
    this store's promotions (unless None), all in one transaction.

    Raises:
        InvalidInput: another store imported before and not ``replace_store``.
    """
    with _one_transaction(catalogue) as sessions:
        _serialise_imports(sessions)  # before the check: it must see the last import
        retired = _previous_stores(sessions, report.source, replace_store)
        repository = PromotionRepository(sessions)
        for source in retired:
            repository.replace_source(source, [])
        _record_store(sessions, report.source, retired)
        # The price files carry no age restriction or tax category: those set by an
        # administrator on products already stored survive a re-import.
        stored = Catalogue(sessions)
        stored.upsert(items.values(), keep_stored=("age_restricted", "tax_category"))
        # Products the replaced store left and this file does not list would be sold at
        # that store's price: withdrawn (kept, as carts and receipts name them).
        withdrawn = stored.withdraw_unlisted(items, datetime.now(UTC)) if retired else 0
        if promotions is not None:
            report.promotions_imported = repository.replace_source(report.source, promotions)
    report.products_imported = len(items)
    report.replaced_stores = retired
    report.products_withdrawn = withdrawn


def _record_store(sessions: sessionmaker[Session], source: str, retired: list[str]) -> None:
    """Record ``source`` as the catalogue's store (and forget the ``retired`` ones), in the
    import's transaction."""
    row = CatalogueImport
    with sessions.begin() as db:
        if retired:
            db.execute(sa.delete(row).where(row.source.in_(retired)))
        db.merge(row(source=source, imported_at=datetime.now(UTC)))


@contextmanager
def _one_transaction(catalogue: Catalogue) -> Iterator[sessionmaker[Session]]:
    """Sessions that all join one transaction of the catalogue's database: committed when
    the block ends, rolled back (everything) when it raises. The repositories' own
    ``begin()`` blocks then neither commit nor end it (``join_transaction_mode``)."""
    with catalogue.sessions() as probe:
        engine = probe.get_bind()
    if not isinstance(engine, sa.Engine):
        raise TypeError("the catalogue's sessions must be bound to an engine")
    with engine.begin() as connection:
        yield sessionmaker(bind=connection, expire_on_commit=False,
                           join_transaction_mode="rollback_only")


def _serialise_imports(sessions: sessionmaker[Session]) -> None:
    """Make imports of one database run one after the other, from here to the end of the
    transaction, so the previous-store check sees every import committed before and no
    other import writes until this one ends (two stores imported at once would mix).

    PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``), held until
    commit or rollback; under READ COMMITTED each statement after it sees what the
    import before committed. SQLite: a write statement that changes nothing opens the
    write transaction now (SQLite has one writer at a time; :func:`make_engine`'s
    connections queue for it), so the check reads inside it rather than before it.
    """
    with sessions() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK_KEY})
        else:
            db.execute(sa.text("DELETE FROM promotions WHERE 0 = 1"))  # opens the write


def _previous_stores(sessions: sessionmaker[Session], source: str,
                     replace_store: bool) -> list[str]:
    """The ``chain:store`` of earlier imports other than ``source`` (recorded in
    ``catalogue_imports``, and the promotions' sources of imports made before it), sorted.

    Raises:
        InvalidInput: there is one and ``replace_store`` is False.
    """
    with sessions() as db:
        sources = {*db.scalars(sa.select(PromotionRow.source).distinct()),
                   *db.scalars(sa.select(CatalogueImport.source))}
    others = sorted(s for s in sources if s != source and _IMPORTED_SOURCE.fullmatch(s))
    if others and not replace_store:
        raise InvalidInput(
            f"the catalogue holds the promotions of chain:store {', '.join(others)}, imported "
            f"before; importing {source} would mix the two stores' prices and promotions. "
            "Pass --replace-store to retire those promotions and import this store")
    return others


def _this_store(record: Record, report: ImportReport) -> dict[str, str]:
    """The record's fields if it is well-formed and of the store being imported; raises
    Rejected (the line's problem, or OTHER_STORE)."""
    row = record.fields
    if row is None:
        raise Rejected(record.problem)
    if (row["chain"].strip(), row["store"].strip()) != (report.chain_id, report.store_id):
        raise Rejected(OTHER_STORE)
    return row


def _read_products(path: Path, report: ImportReport,
                   progress: Progress | None) -> dict[str, CatalogueItem]:
    """The store's products of the price file by code; rejections counted in ``report``."""
    items: dict[str, CatalogueItem] = {}
    for record in read_rows(path, PRICE_COLUMNS):
        report.prices_read += 1
        if progress is not None:
            progress(1)
        try:
            item = parse_product(_this_store(record, report))
            if item.code in items:
                raise Rejected("duplicate barcode")
            items[item.code] = item
        except Rejected as exc:
            _count(report.prices_rejected, report.prices_rejected_lines, exc.reason,
                   record.line)
    return items


def _read_promotions(path: Path, items: dict[str, CatalogueItem], report: ImportReport,
                     as_of: date | None, progress: Progress | None) -> list[PromoRow]:
    """The store's accepted promotion rows; rejections counted in ``report``."""
    rows: list[PromoRow] = []
    seen: set[tuple[str, str]] = set()
    for record in read_rows(path, PROMO_COLUMNS):
        report.promo_rows_read += 1
        if progress is not None:
            progress(1)
        try:
            parsed = parse_promotion_row(_this_store(record, report), items,
                                         prefix=report.source, as_of=as_of)
            if (parsed.promo_id, parsed.code) in seen:
                raise Rejected("duplicate promotion row")
            seen.add((parsed.promo_id, parsed.code))
            rows.append(parsed)
        except Rejected as exc:
            _count(report.promos_rejected, report.promos_rejected_lines, exc.reason,
                   record.line)
    return rows
