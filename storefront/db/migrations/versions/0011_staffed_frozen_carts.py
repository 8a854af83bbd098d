"""Staffed checkout: the cart frozen as priced when its first tender was taken, and the
card token a pending card tender was started with.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``staffed_frozen_carts``; add ``tenders.payment_token`` and
    ``tenders.payment_token_sha256`` (NULL for tenders taken before)."""
    op.create_table(
        "staffed_frozen_carts",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("age_restricted", sa.Boolean(), nullable=False),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("priced_at", TS, nullable=False),
        sa.Column("frozen_by", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("tenders") as batch:
        batch.add_column(sa.Column("payment_token", sa.String(200), nullable=True))
        batch.add_column(sa.Column("payment_token_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop ``staffed_frozen_carts`` (open staffed sales are priced live again) and the
    tender token columns."""
    with op.batch_alter_table("tenders") as batch:
        batch.drop_column("payment_token_sha256")
        batch.drop_column("payment_token")
    op.drop_table("staffed_frozen_carts")
