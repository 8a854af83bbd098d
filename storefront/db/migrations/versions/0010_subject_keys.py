"""Per-person data keys: one wrapped AES-256 data key per enrolled shopper.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``subject_keys``."""
    op.create_table(
        "subject_keys",
        sa.Column("subject_id", sa.String(64),
                  sa.ForeignKey("shoppers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kek_id", sa.String(64), nullable=False, index=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("rotated_at", TS, nullable=True),
    )


def downgrade() -> None:
    """Drop ``subject_keys`` (every template written since becomes unreadable)."""
    op.drop_table("subject_keys")
