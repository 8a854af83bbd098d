"""Promotions and tax categories in the database (tables ``promotions``,
``promotion_items``, ``tax_categories``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import PromotionItem, PromotionRow, TaxCategory
from storefront.errors import InvalidInput
from storefront.pricing.model import FULL_RATE_BP, Promotion, PromotionKind

_CHUNK = 500


class PromotionRepository:
    """Stores promotions by import ``source`` and finds those touching a cart."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def replace_source(self, source: str, promotions: Sequence[Promotion]) -> int:
        """Replace every promotion of ``source`` with ``promotions`` in one transaction.

        Re-importing the same file therefore leaves the same rows (idempotent).
        Returns the number of promotions stored.
        """
        with self._sessions.begin() as db:
            old_ids = sa.select(PromotionRow.id).where(PromotionRow.source == source)
            db.execute(sa.delete(PromotionItem).where(PromotionItem.promotion_id.in_(old_ids)))
            db.execute(sa.delete(PromotionRow).where(PromotionRow.source == source))
            rows = [_row(source, promo) for promo in promotions]
            items = [{"promotion_id": promo.promotion_id, "code": code}
                     for promo in promotions for code in sorted(promo.codes)]
            for start in range(0, len(rows), _CHUNK):
                db.execute(sa.insert(PromotionRow), rows[start:start + _CHUNK])
            for start in range(0, len(items), _CHUNK):
                db.execute(sa.insert(PromotionItem), items[start:start + _CHUNK])
        return len(rows)

    def for_codes(self, codes: Iterable[str]) -> list[Promotion]:
        """Promotions with at least one of ``codes`` eligible, with all their codes."""
        with self._sessions() as db:
            return _promotions_for(db, codes)

    def for_cart(self, codes: Iterable[str]) -> tuple[dict[str, int], list[Promotion]]:
        """(:meth:`tax_rates`, :meth:`for_codes` of ``codes``) read in one session."""
        with self._sessions() as db:
            rates = {code: rate for code, rate in db.connection().execute(_TAX_RATES)}
            return rates, _promotions_for(db, codes)

    def count(self, source: str | None = None) -> int:
        """Number of promotions (of ``source`` when given)."""
        query = sa.select(sa.func.count()).select_from(PromotionRow)
        if source is not None:
            query = query.where(PromotionRow.source == source)
        with self._sessions() as db:
            return int(db.scalar(query) or 0)

    def set_tax_category(self, code: str, name: str, rate_bp: int) -> None:
        """Create or change a tax category; raises InvalidInput for a rate outside 0-10000."""
        if not 0 <= rate_bp <= FULL_RATE_BP or code == "standard":
            raise InvalidInput(f"tax category {code!r}: rate 0-10000 bp, and 'standard' "
                               "is a store setting")
        with self._sessions.begin() as db:
            db.merge(TaxCategory(code=code, name=name, rate_bp=rate_bp))

    def tax_rates(self) -> dict[str, int]:
        """Tax category code -> rate in basis points."""
        with self._sessions() as db:
            return {row.code: row.rate_bp for row in db.scalars(sa.select(TaxCategory))}


def _promotions_for(db: Session, codes: Iterable[str]) -> list[Promotion]:
    """Promotions with at least one of ``codes`` eligible, with all their codes (Core
    statements built once: this runs on every exit)."""
    wanted = sorted(set(codes))
    if not wanted:
        return []
    conn = db.connection()
    rows = conn.execute(_PROMOTIONS_OF, {"codes": wanted}).all()
    if not rows:
        return []
    codes_of: dict[str, set[str]] = {}
    for promotion_id, code in conn.execute(_LINKS_OF, {"codes": wanted}):
        codes_of.setdefault(promotion_id, set()).add(code)
    return [_promotion(row, frozenset(codes_of.get(row.id, ()))) for row in rows]


_PROMOTIONS = cast(sa.Table, PromotionRow.__table__)
_ITEMS = cast(sa.Table, PromotionItem.__table__)
_IDS_OF = sa.select(_ITEMS.c.promotion_id).where(
    _ITEMS.c.code.in_(sa.bindparam("codes", expanding=True)))
_PROMOTIONS_OF = sa.select(_PROMOTIONS).where(_PROMOTIONS.c.id.in_(_IDS_OF))
_LINKS_OF = sa.select(_ITEMS.c.promotion_id, _ITEMS.c.code).where(
    _ITEMS.c.promotion_id.in_(_IDS_OF))
_TAX_RATES = sa.select(TaxCategory.code, TaxCategory.rate_bp)


def _row(source: str, promo: Promotion) -> dict[str, object]:
    return {"id": promo.promotion_id, "source": source, "kind": promo.kind.value,
            "description": promo.description[:300],
            "min_quantity_milli": promo.min_quantity_milli, "price_minor": promo.price_minor,
            "bundle_milli": promo.bundle_milli, "rate_bp": promo.rate_bp,
            "buy_units": promo.buy_units, "get_units": promo.get_units,
            "club_only": promo.club_only, "valid_until": promo.valid_until}


def _promotion(row: PromotionRow | sa.Row[Any], codes: frozenset[str]) -> Promotion:
    return Promotion(row.id, PromotionKind(row.kind), codes, row.description,
                     row.min_quantity_milli, row.price_minor, row.bundle_milli, row.rate_bp,
                     row.buy_units, row.get_units, row.club_only, row.valid_until)
