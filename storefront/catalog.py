"""The product catalogue: codes (GTIN or the seller's own code) to names and prices."""

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
    """A product as priced: ``unit_price_minor`` in minor currency units (>= 0)."""

    code: str
    name: str
    unit_price_minor: int
    currency: str
    is_gtin: bool = False


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


def make_item(code: str, name: str, unit_price_minor: int, currency: str) -> CatalogueItem:
    """Build a validated catalogue item; raises InvalidInput on a bad code, name or price."""
    validate_code(code)
    if not name or len(name) > 300:
        raise InvalidInput(f"product {code}: name must be 1-300 characters")
    if isinstance(unit_price_minor, bool) or not isinstance(unit_price_minor, int):
        raise InvalidInput(f"product {code}: price must be an integer of minor units")
    if unit_price_minor < 0:
        raise InvalidInput(f"product {code}: price must not be negative")
    return CatalogueItem(code, name, unit_price_minor, currency, is_valid_gtin(code))


class Catalogue:
    """Catalogue repository over the ``products`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def upsert(self, items: Iterable[CatalogueItem]) -> int:
        """Insert or replace products; returns how many were written."""
        count = 0
        with self._sessions.begin() as db:
            for item in items:
                db.merge(Product(code=item.code, name=item.name,
                                 unit_price_minor=item.unit_price_minor,
                                 currency=item.currency, is_gtin=item.is_gtin))
                count += 1
        return count

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


def _to_item(row: Product) -> CatalogueItem:
    return CatalogueItem(row.code, row.name, row.unit_price_minor, row.currency, row.is_gtin)
