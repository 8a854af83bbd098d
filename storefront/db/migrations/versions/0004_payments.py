"""Payments: hold at entry, journal of processor calls, age-restricted products.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add payment columns, the ``payment_operations`` journal and ``age_restricted``."""
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("age_restricted", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("shopper_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("captured_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("capture_ref", sa.String(128), nullable=True))
        batch.add_column(sa.Column("refunded_minor", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("superseded_ref", sa.String(128), nullable=True))
        batch.create_index("ix_payments_shopper_id", ["shopper_id"])
    op.create_table(
        "payment_operations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("payment_id", sa.String(64),
                  sa.ForeignKey("payments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(160), nullable=False, unique=True),
        sa.Column("reference", sa.String(128), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("prior_state", sa.String(24), nullable=False),
        sa.Column("result_ref", sa.String(128), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_payment_operations_payment_id", "payment_operations", ["payment_id"])
    op.create_index("ix_payment_operations_state", "payment_operations", ["state"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("ix_payment_operations_state", "payment_operations")
    op.drop_index("ix_payment_operations_payment_id", "payment_operations")
    op.drop_table("payment_operations")
    with op.batch_alter_table("payments") as batch:
        batch.drop_index("ix_payments_shopper_id")
        for column in ("superseded_ref", "refunded_minor", "capture_ref", "captured_minor",
                       "shopper_id"):
            batch.drop_column(column)
    with op.batch_alter_table("products") as batch:
        batch.drop_column("age_restricted")
