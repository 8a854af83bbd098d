"""Initial schema: shoppers, palm templates, catalogue, sessions, payments, receipts, cart events.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of version 0.1."""
    op.create_table(
        "shoppers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("payment_token", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "palm_templates",
        sa.Column("template_id", sa.String(64), primary_key=True),
        sa.Column("shopper_id", sa.String(64),
                  sa.ForeignKey("shoppers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_palm_templates_shopper_id", "palm_templates", ["shopper_id"])
    op.create_table(
        "products",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("is_gtin", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "shopping_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("shopper_id", sa.String(64), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("entry_method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("staffed_reason", sa.String(300), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("exited_at", TS, nullable=True),
    )
    op.create_index("ix_shopping_sessions_shopper_id", "shopping_sessions", ["shopper_id"])
    op.create_index("ix_shopping_sessions_status", "shopping_sessions", ["status"])
    op.create_table(
        "payments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("processor_ref", sa.String(128), nullable=True),
        sa.Column("failure_reason", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_payments_session_id", "payments", ["session_id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), nullable=False, unique=True),
        sa.Column("shopper_id", sa.String(64), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
    )
    op.create_index("ix_receipts_shopper_id", "receipts", ["shopper_id"])
    op.create_table(
        "cart_events",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.Identity(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("device_seq", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.UniqueConstraint("session_id", "version", name="uq_cart_events_session_version"),
        sa.UniqueConstraint("device_id", "device_seq", name="uq_cart_events_device"),
    )


def downgrade() -> None:
    """Drop every table of version 0.1."""
    for table in ("cart_events", "receipts", "payments", "shopping_sessions", "products",
                  "palm_templates", "shoppers"):
        op.drop_table(table)
