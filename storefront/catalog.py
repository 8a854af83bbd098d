"""The product catalogue: codes (GTIN or the seller's own code) to names and prices.

Codes are strings: a GTIN keeps its leading zeros, and a chain-internal code
(produce look-up numbers, in-store codes, numbers whose GS1 check digit fails)
is accepted with ``is_gtin = False``. Prices are integer minor units; for goods
sold by weight the price is per kilogram.

A product can be withdrawn from sale (``withdrawn_at``): a catalogue import that replaced
the store did not list it, so its stored price is the other store's. Its row stays (carts,
receipts and disputes name products by code) and reads as usual, but pricing refuses it
(:func:`not_on_sale_reason`); writing it again (an import listing it, ``merge`` from
``PUT /products``) puts it back on sale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from stdnum import ean
from stdnum.exceptions import ValidationError

from storefront.db.models import Product
from storefront.errors import InvalidInput, UnknownProduct

_CODE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
MAX_PRICE_MINOR = 10**9
"""The highest unit price a product may have (minor units, per kg for weighed goods):
10,000,000.00 in a two-decimal currency. Every way into the catalogue (the API, file
imports, the demo's baskets) refuses more, so totals stay far inside a 64-bit column."""


@dataclass(frozen=True)
class CatalogueItem:
    """A product as priced: ``unit_price_minor`` in minor currency units (>= 0).

    ``sold_by_weight``: the price is per kg and cart quantities are grams.
    ``tax_category``: ``standard`` or a row of ``tax_categories``.
    ``allow_discount``: False keeps the product out of every promotion.
    ``age_restricted``: sold only after staff check the shopper's age.
    ``withdrawn_at``: not on sale since then (UTC; None: on sale); see the module
    docstring.
    """

    code: str
    name: str
    unit_price_minor: int
    currency: str
    is_gtin: bool = False
    sold_by_weight: bool = False
    tax_category: str = "standard"
    allow_discount: bool = True
    age_restricted: bool = False
    withdrawn_at: datetime | None = None

    @property
    def on_sale(self) -> bool:
        """False when the product is withdrawn from sale (pricing refuses it)."""
        return self.withdrawn_at is None


def not_on_sale_reason(item: CatalogueItem) -> str:
    """Why a withdrawn ``item`` cannot be priced, for staff (the staffed checkout's reason)."""
    when = item.withdrawn_at.strftime("%Y-%m-%d %H:%M UTC") if item.withdrawn_at else "?"
    return (f"product {item.code} is not on sale: withdrawn at {when}, when a catalogue "
            f"import replaced the store and its price file did not list it (its price "
            f"was the other store's); PUT /products/{item.code} with its price puts it "
            f"back on sale")


def validate_code(code: str) -> str:
    """Check a product code's shape; raises InvalidInput with the reason."""
    if not isinstance(code, str) or not _CODE.match(code):
        raise InvalidInput(f"product code {code!r} must be 1-32 letters, digits, '.', '_' or '-'")
    return code


def is_valid_gtin(code: str) -> bool:
    """True when ``code`` is a GTIN-8/12/13/14 with a correct check digit (python-stdnum)."""
    if not code.isdigit() or len(code) not in (8, 12, 13, 14):
        return False
    try:
        ean.validate(code)
    except ValidationError:
        return False
    return True


def make_item(code: str, name: str, unit_price_minor: int, currency: str, *,
              sold_by_weight: bool = False, tax_category: str = "standard",
              allow_discount: bool = True, age_restricted: bool = False) -> CatalogueItem:
    """Build a validated catalogue item; raises InvalidInput on a bad code, name or price
    (a price is 0 to ``MAX_PRICE_MINOR`` minor units).

    ``is_gtin`` is set from the GS1 check digit (python-stdnum); other codes are
    accepted as the seller's own.
    """
    validate_code(code)
    if not name or len(name) > 300:
        raise InvalidInput(f"product {code}: name must be 1-300 characters")
    if isinstance(unit_price_minor, bool) or not isinstance(unit_price_minor, int):
        raise InvalidInput(f"product {code}: price must be an integer of minor units")
    if unit_price_minor < 0:
        raise InvalidInput(f"product {code}: price must not be negative")
    if unit_price_minor > MAX_PRICE_MINOR:
        raise InvalidInput(f"product {code}: price {unit_price_minor} is above the highest "
                           f"allowed, {MAX_PRICE_MINOR} minor units")
    if not _CODE.match(tax_category):
        raise InvalidInput(f"product {code}: bad tax category {tax_category!r}")
    return CatalogueItem(code, name, unit_price_minor, currency, is_valid_gtin(code),
                         sold_by_weight, tax_category, allow_discount, age_restricted)


class Catalogue:
    """Catalogue repository over the ``products`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory (promotions and tax categories live in the same database)."""
        return self._sessions

    def upsert(self, items: Iterable[CatalogueItem], *,
               keep_stored: Iterable[str] = ()) -> int:
        """Insert or replace products (bulk, one transaction); returns how many were written.

        ``keep_stored``: columns (of ``age_restricted``, ``tax_category``,
        ``sold_by_weight``, ``allow_discount``) that a product already stored keeps
        instead of taking the item's value; new products take the item's. A price import
        passes the flags its files do not carry, so a re-import never clears an age
        restriction or a tax category an administrator set. Every product written is on
        sale (``withdrawn_at`` from the item: None for imported and new items).

        Raises:
            ValueError: a column of ``keep_stored`` that is not one of those flags.
        """
        kept = set(keep_stored)
        if not kept <= _FLAG_COLUMNS:
            raise ValueError(f"cannot keep {sorted(kept - _FLAG_COLUMNS)}: not a product flag")
        rows = {item.code: _to_row(item) for item in items}
        with self._sessions.begin() as db:
            existing: set[str] = set()
            codes = sorted(rows)
            for start in range(0, len(codes), _CHUNK):
                chunk = codes[start:start + _CHUNK]
                existing.update(db.scalars(sa.select(Product.code)
                                           .where(Product.code.in_(chunk))))
            new = [rows[code] for code in codes if code not in existing]
            old = [{k: v for k, v in rows[code].items() if k not in kept}
                   for code in codes if code in existing]
            if new:
                db.execute(sa.insert(Product), new)
            if old:
                db.execute(sa.update(Product), old)
        return len(rows)

    def merge(self, code: str, name: str, unit_price_minor: int, currency: str, *,
              sold_by_weight: bool | None = None, tax_category: str | None = None,
              allow_discount: bool | None = None, age_restricted: bool | None = None,
              known_tax_categories: Iterable[str] | None = None) -> CatalogueItem:
        """Create or update one product, keeping the stored flags a caller leaves as None.

        Name, price and currency are always set; ``sold_by_weight``, ``tax_category``,
        ``allow_discount`` and ``age_restricted`` are changed only when given, else kept
        from the stored row (a new product gets ``make_item``'s defaults). A price change
        therefore never clears an age restriction. A withdrawn product is put back on sale
        (a price set here is this store's). The read and the write are one
        transaction that first locks the row (a no-op UPDATE: the row on PostgreSQL, the
        database on SQLite), so two concurrent merges cannot undo each other's flags.
        ``known_tax_categories``: when given, ``tax_category`` must be one of them.

        Raises:
            InvalidInput: bad code, name, price or tax category (``make_item``), or a tax
                category not in ``known_tax_categories``.
        """
        flags = (sold_by_weight, tax_category, allow_discount, age_restricted)
        try:
            return self._merge_once(code, name, unit_price_minor, currency, flags,
                                    known_tax_categories)
        except IntegrityError:  # a concurrent merge created the product first: update it
            return self._merge_once(code, name, unit_price_minor, currency, flags,
                                    known_tax_categories)

    def _merge_once(self, code: str, name: str, unit_price_minor: int, currency: str,
                    flags: tuple[bool | None, str | None, bool | None, bool | None],
                    known_tax_categories: Iterable[str] | None) -> CatalogueItem:
        sold_by_weight, tax_category, allow_discount, age_restricted = flags
        with self._sessions.begin() as db:
            db.execute(sa.update(Product).where(Product.code == code)
                       .values(name=Product.name))
            row = db.get(Product, code, populate_existing=True)
            # The stored product, or a new one with make_item's defaults (validates too).
            keep = _to_item(row) if row is not None else make_item(
                code, name, unit_price_minor, currency)
            item = make_item(
                code, name, unit_price_minor, currency,
                sold_by_weight=keep.sold_by_weight if sold_by_weight is None
                else sold_by_weight,
                tax_category=keep.tax_category if tax_category is None else tax_category,
                allow_discount=keep.allow_discount if allow_discount is None
                else allow_discount,
                age_restricted=keep.age_restricted if age_restricted is None
                else age_restricted)
            if tax_category is not None and known_tax_categories is not None \
                    and tax_category not in set(known_tax_categories):
                raise InvalidInput(f"product {code}: unknown tax category {tax_category!r}")
            if row is None:
                db.execute(sa.insert(Product), [_to_row(item)])
            else:
                db.execute(sa.update(Product), [_to_row(item)])
        return item

    def get(self, code: str) -> CatalogueItem:
        """The product with ``code``; raises UnknownProduct."""
        with self._sessions() as db:
            row = db.get(Product, code)
            if row is None:
                raise UnknownProduct(f"product {code!r} is not in the catalogue")
            return _to_item(row)

    def find_many(self, codes: Iterable[str]) -> dict[str, CatalogueItem]:
        """Products for those of ``codes`` that are in the catalogue (one query); unknown
        codes are left out."""
        wanted = sorted(set(codes))
        if not wanted:
            return {}
        with self._sessions() as db:
            rows = db.scalars(sa.select(Product).where(Product.code.in_(wanted))).all()
        return {row.code: _to_item(row) for row in rows}

    def get_many(self, codes: Iterable[str]) -> dict[str, CatalogueItem]:
        """Products for ``codes``; raises UnknownProduct naming the first missing code."""
        wanted = sorted(set(codes))
        found = self.find_many(wanted)
        missing = [code for code in wanted if code not in found]
        if missing:
            raise UnknownProduct(f"product {missing[0]!r} is not in the catalogue")
        return found

    def withdraw_unlisted(self, listed: Iterable[str], at: datetime) -> int:
        """Withdraw from sale, at ``at`` (UTC), every product on sale whose code is not in
        ``listed`` (one transaction; rows are kept). Returns how many were withdrawn;
        products already withdrawn keep their time."""
        keep = set(listed)
        with self._sessions.begin() as db:
            on_sale = db.scalars(sa.select(Product.code)
                                 .where(Product.withdrawn_at.is_(None))).all()
            codes = sorted(code for code in on_sale if code not in keep)
            for start in range(0, len(codes), _CHUNK):
                db.execute(sa.update(Product)
                           .where(Product.code.in_(codes[start:start + _CHUNK]),
                                  Product.withdrawn_at.is_(None))
                           .values(withdrawn_at=at))
        return len(codes)

    def count(self) -> int:
        """Number of products."""
        with self._sessions() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(Product)) or 0)


_CHUNK = 500


_FLAG_COLUMNS = frozenset({"age_restricted", "tax_category", "sold_by_weight", "allow_discount"})


def _to_row(item: CatalogueItem) -> dict[str, object]:
    return {"code": item.code, "name": item.name, "unit_price_minor": item.unit_price_minor,
            "currency": item.currency, "is_gtin": item.is_gtin,
            "sold_by_weight": item.sold_by_weight, "tax_category": item.tax_category,
            "allow_discount": item.allow_discount, "age_restricted": item.age_restricted,
            "withdrawn_at": item.withdrawn_at}


def _to_item(row: Product) -> CatalogueItem:
    return CatalogueItem(row.code, row.name, row.unit_price_minor, row.currency, row.is_gtin,
                         row.sold_by_weight, row.tax_category, row.allow_discount,
                         row.age_restricted, row.withdrawn_at)
