"""Pricing: weighed goods, tax categories and promotions in the catalogue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add product pricing columns and the tax category and promotion tables."""
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("sold_by_weight", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("tax_category", sa.String(32), nullable=False,
                                   server_default="standard"))
        batch.add_column(sa.Column("allow_discount", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
    op.create_table(
        "tax_categories",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("rate_bp", sa.Integer(), nullable=False),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("min_quantity_milli", sa.BigInteger(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=True),
        sa.Column("bundle_milli", sa.BigInteger(), nullable=True),
        sa.Column("rate_bp", sa.Integer(), nullable=True),
        sa.Column("buy_units", sa.Integer(), nullable=True),
        sa.Column("get_units", sa.Integer(), nullable=True),
        sa.Column("club_only", sa.Boolean(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
    )
    op.create_index("ix_promotions_source", "promotions", ["source"])
    op.create_table(
        "promotion_items",
        sa.Column("promotion_id", sa.String(80),
                  sa.ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("code", sa.String(32), primary_key=True),
    )
    op.create_index("ix_promotion_items_code", "promotion_items", ["code"])


def downgrade() -> None:
    """Drop the promotion and tax tables and the product pricing columns."""
    op.drop_index("ix_promotion_items_code", "promotion_items")
    op.drop_table("promotion_items")
    op.drop_index("ix_promotions_source", "promotions")
    op.drop_table("promotions")
    op.drop_table("tax_categories")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("allow_discount")
        batch.drop_column("tax_category")
        batch.drop_column("sold_by_weight")
