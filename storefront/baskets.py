"""Real shopping baskets from an invoice file in the UCI Online Retail II CSV format.

Columns: ``Invoice, StockCode, Description, Quantity, InvoiceDate, Price,
Customer ID, Country`` (gzip allowed). The catalogue is derived from the same
file: each stock code's shelf price is its most frequent unit price (its modal
price; ties go to the price seen last). A basket is one invoice; invoices that a
single-price shelf could not have produced are skipped and counted by reason:
cancellations (``C...``), non-positive quantities or prices, prices finer than a
penny, prices above the catalogue's highest (:data:`storefront.catalog.MAX_PRICE_MINOR`),
more than :data:`MAX_LINE_QUANTITY` units of one code, the same code at two prices in
one invoice, codes that are not product codes (e.g. ``BANK CHARGES``), and invoices at
other than the shelf price (the retailer also sold at negotiated prices).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storefront.catalog import MAX_PRICE_MINOR, CatalogueItem, make_item
from storefront.errors import InvalidInput
from storefront.money import parse_major_to_minor

REQUIRED_COLUMNS = ("Invoice", "StockCode", "Description", "Quantity", "Price")

MAX_LINE_QUANTITY = 100_000
"""The most units of one code an invoice may hold to become a basket. A shopper's smart
cart picks at most ``hardware.simulators.cart.MAX_PICK_QUANTITY`` (999) units per item
event, so a basket line costs about one event per 999 units: this bound keeps a line to
about a hundred events, where a mistyped quantity (999999999) would make a million and
stall the demo. The real Online Retail II file's largest line is 19,152 units."""

TOO_MANY_UNITS = f"more than {MAX_LINE_QUANTITY} units of one code"
PRICE_TOO_HIGH = f"price above {MAX_PRICE_MINOR} minor units"


@dataclass(frozen=True)
class Basket:
    """One real invoice as a basket: ``lines`` are (code, quantity) sorted by code."""

    invoice: str
    lines: tuple[tuple[str, int], ...]
    expected_total_minor: int


@dataclass
class BasketFile:
    """What was read: the derived catalogue, usable baskets, skipped invoices by reason."""

    items: list[CatalogueItem]
    baskets: list[Basket]
    invoices_read: int
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Line:
    code: str
    name: str
    quantity: int
    price_minor: int


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.is_file():
        raise InvalidInput(f"basket file {path} does not exist")
    try:
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InvalidInput(f"{path.name}: missing column(s) {', '.join(missing)}")
            yield from reader
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise InvalidInput(f"{path.name}: unreadable invoice file ({exc})") from exc


def _parse_line(row: dict[str, str]) -> _Line | str:
    """A parsed line, or the reason its invoice cannot be a basket."""
    code = (row.get("StockCode") or "").strip()
    try:
        make_item(code, "x", 0, "GBP")
        quantity = int((row.get("Quantity") or "").strip())
        price = parse_major_to_minor(row.get("Price") or "")
    except (InvalidInput, ValueError):
        return "unusable code, quantity or price"
    if quantity <= 0 or price <= 0:
        return "non-positive quantity or price"
    if quantity > MAX_LINE_QUANTITY:
        return TOO_MANY_UNITS
    if price > MAX_PRICE_MINOR:
        return PRICE_TOO_HIGH
    name = (row.get("Description") or "").strip() or code
    return _Line(code, name, quantity, price)


def _group_invoices(path: Path) -> tuple[dict[str, list[_Line]], Counter[str], int]:
    invoices: dict[str, list[_Line]] = defaultdict(list)
    skipped: Counter[str] = Counter()
    bad: set[str] = set()
    for row in _rows(path):
        invoice = (row.get("Invoice") or "").strip()
        if not invoice or invoice in bad:
            continue
        parsed = _parse_line(row) if not invoice.startswith("C") else "cancellation"
        if isinstance(parsed, str):
            bad.add(invoice)
            invoices.pop(invoice, None)
            skipped[parsed] += 1
            continue
        invoices[invoice].append(parsed)
    return invoices, skipped, len(invoices) + sum(skipped.values())


def _shelf_prices(invoices: dict[str, list[_Line]]) -> dict[str, tuple[int, str]]:
    prices: dict[str, Counter[int]] = defaultdict(Counter)
    names: dict[str, Counter[str]] = defaultdict(Counter)
    last: dict[str, int] = {}
    for lines in invoices.values():
        for line in lines:
            prices[line.code][line.price_minor] += 1
            names[line.code][line.name] += 1
            last[line.code] = line.price_minor
    shelf = {}
    for code, counts in prices.items():
        top = max(counts.values())
        modal = [p for p, n in counts.items() if n == top]
        price = last[code] if last[code] in modal else max(modal)
        shelf[code] = (price, names[code].most_common(1)[0][0])
    return shelf


def _basket(invoice: str, lines: list[_Line], shelf: dict[str, tuple[int, str]]) -> Basket | str:
    quantities: Counter[str] = Counter()
    prices: dict[str, int] = {}
    for line in lines:
        if prices.setdefault(line.code, line.price_minor) != line.price_minor:
            return "same code at two prices in one invoice"
        if line.price_minor != shelf[line.code][0]:
            return "not at the shelf price"
        quantities[line.code] += line.quantity
        if quantities[line.code] > MAX_LINE_QUANTITY:  # several lines of one code
            return TOO_MANY_UNITS
    total = sum(q * prices[c] for c, q in quantities.items())
    return Basket(invoice, tuple(sorted(quantities.items())), total)


def load_baskets(path: Path, currency: str = "GBP") -> BasketFile:
    """Read an Online Retail II CSV (gzip allowed) into a catalogue and baskets.

    Invoices that cannot be baskets (see the module docstring) are skipped and counted
    by reason in :attr:`BasketFile.skipped`, never raised.

    Raises:
        InvalidInput: the file is missing, unreadable, or lacks a required column.
    """
    invoices, skipped, read = _group_invoices(path)
    shelf = _shelf_prices(invoices)
    baskets = []
    for invoice, lines in invoices.items():
        result = _basket(invoice, lines, shelf)
        if isinstance(result, str):
            skipped[result] += 1
        else:
            baskets.append(result)
    items = [make_item(code, name[:300], price, currency)
             for code, (price, name) in sorted(shelf.items())]
    return BasketFile(items, baskets, read, skipped)
