"""SQLAlchemy table models of the storefront (shoppers, templates, catalogue, sessions, payments).

The shopping-session event log itself lives in ``cart.sql_event_store`` (table
``cart_events``); ``shopping_sessions`` here is a read model of it for queues and lists.
Money is integer minor units; times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that refuses naive datetimes and always comes back tz-aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime refused: times must be timezone-aware UTC")
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        from datetime import UTC

        if value is None:
            return None
        stamp: datetime = value
        if stamp.tzinfo is None:  # SQLite stores no offset; we only ever write UTC
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the storefront tables."""


class Shopper(Base):
    """A shopper account; ``payment_token`` is a processor token, never a card number."""

    __tablename__ = "shoppers"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    payment_token: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PalmTemplate(Base):
    """One encrypted palm template (AES-256-GCM envelope blob) of a shopper."""

    __tablename__ = "palm_templates"
    template_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("shoppers.id", ondelete="CASCADE"), index=True
    )
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Product(Base):
    """A catalogue product; ``code`` is a GTIN or the seller's own code (a string)."""

    __tablename__ = "products"
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    unit_price_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    is_gtin: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    sold_by_weight: Mapped[bool] = mapped_column(sa.Boolean(), default=False,
                                                 server_default=sa.false())
    tax_category: Mapped[str] = mapped_column(sa.String(32), default="standard",
                                              server_default="standard")
    allow_discount: Mapped[bool] = mapped_column(sa.Boolean(), default=True,
                                                 server_default=sa.true())


class TaxCategory(Base):
    """A tax category other than ``standard`` (whose rate is a store setting)."""

    __tablename__ = "tax_categories"
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    rate_bp: Mapped[int] = mapped_column(sa.Integer())


class PromotionRow(Base):
    """A promotion (see ``storefront.pricing.model.Promotion``); ``source`` is its import.

    Quantities are milli-quantities (units x 1000, or grams); money minor units;
    ``rate_bp`` basis points.
    """

    __tablename__ = "promotions"
    id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.String(300))
    min_quantity_milli: Mapped[int] = mapped_column(sa.BigInteger())
    price_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    bundle_milli: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    rate_bp: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    buy_units: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    get_units: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    club_only: Mapped[bool] = mapped_column(sa.Boolean())
    valid_until: Mapped[date | None] = mapped_column(sa.Date(), nullable=True)


class PromotionItem(Base):
    """A product code eligible for a promotion."""

    __tablename__ = "promotion_items"
    promotion_id: Mapped[str] = mapped_column(
        sa.String(80), sa.ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True, index=True)


class ShoppingSession(Base):
    """Read model of a shopping session (the event log in ``cart_events`` is the truth)."""

    __tablename__ = "shopping_sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    entry_method: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    staffed_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    total_minor: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    exited_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The exit flow's lease: one process at a time runs a session's exit (see checkout.py).
    exit_claim: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    exit_claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The cart as priced at exit (JSON list of lines), so retries charge what was priced.
    priced_lines: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(), nullable=True)


class Payment(Base):
    """A payment attempt; state is written before and after each processor call."""

    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    state: Mapped[str] = mapped_column(sa.String(24))
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    processor_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Receipt(Base):
    """A receipt issued at exit; ``lines`` is a JSON list of priced lines."""

    __tablename__ = "receipts"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger())
    currency: Mapped[str] = mapped_column(sa.String(3))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
