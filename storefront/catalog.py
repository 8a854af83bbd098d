"""The product catalogue: codes (GTIN or the seller's own code) to names and prices.

Codes are strings: a GTIN keeps its leading zeros, and a chain-internal code
(produce look-up numbers, in-store codes, numbers whose GS1 check digit fails)
is accepted with ``is_gtin = False``. Prices are integer minor units; for goods
sold by weight the price is per kilogram.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from stdnum import ean
from stdnum.exceptions import ValidationError

from storefront.db.models import Product
from storefront.errors import InvalidInput, UnknownProduct

_CODE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


@dataclass(frozen=True)
class CatalogueItem:
    """A product as priced: ``unit_price_minor`` in minor currency units (>= 0).

    ``sold_by_weight``: the price is per kg and cart quantities are grams.
    ``tax_category``: ``standard`` or a row of ``tax_categories``.
    ``allow_discount``: False keeps the product out of every promotion.
    ``age_restricted``: sold only after staff check the shopper's age.
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
    """Build a validated catalogue item; raises InvalidInput on a bad code, name or price.

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

    def upsert(self, items: Iterable[CatalogueItem]) -> int:
        """Insert or replace products (bulk, one transaction); returns how many were written."""
        rows = {item.code: _to_row(item) for item in items}
        with self._sessions.begin() as db:
            existing: set[str] = set()
            codes = sorted(rows)
            for start in range(0, len(codes), _CHUNK):
                chunk = codes[start:start + _CHUNK]
                existing.update(db.scalars(sa.select(Product.code)
                                           .where(Product.code.in_(chunk))))
            new = [rows[code] for code in codes if code not in existing]
            old = [rows[code] for code in codes if code in existing]
            if new:
                db.execute(sa.insert(Product), new)
            if old:
                db.execute(sa.update(Product), old)
        return len(rows)

    def get(self, code: str) -> CatalogueItem:
        """The product with ``code``; raises UnknownProduct."""
        with self._sessions() as db:
            row = db.get(Product, code)
            if row is None:
                raise UnknownProduct(f"product {code!r} is not in the catalogue")
            return _to_item(row)

    def get_many(self, codes: Iterable[str]) -> dict[str, CatalogueItem]:
        """Products for ``codes``; raises UnknownProduct naming the first missing code."""
        wanted = sorted(set(codes))
        with self._sessions() as db:
            rows = db.scalars(sa.select(Product).where(Product.code.in_(wanted))).all()
        found = {row.code: _to_item(row) for row in rows}
        missing = [code for code in wanted if code not in found]
        if missing:
            raise UnknownProduct(f"product {missing[0]!r} is not in the catalogue")
        return found

    def count(self) -> int:
        """Number of products."""
        with self._sessions() as db:
            return int(db.scalar(sa.select(sa.func.count()).select_from(Product)) or 0)


_CHUNK = 500


def _to_row(item: CatalogueItem) -> dict[str, object]:
    return {"code": item.code, "name": item.name, "unit_price_minor": item.unit_price_minor,
            "currency": item.currency, "is_gtin": item.is_gtin,
            "sold_by_weight": item.sold_by_weight, "tax_category": item.tax_category,
            "allow_discount": item.allow_discount, "age_restricted": item.age_restricted}


def _to_item(row: Product) -> CatalogueItem:
    return CatalogueItem(row.code, row.name, row.unit_price_minor, row.currency, row.is_gtin,
                         row.sold_by_weight, row.tax_category, row.allow_discount,
                         row.age_restricted)
