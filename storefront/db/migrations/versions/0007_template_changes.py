"""Change log of palm templates, so every API worker's index follows the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the log and record every template already stored as added."""
    op.create_table(
        "palm_template_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
                  primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("shopper_id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("INSERT INTO palm_template_changes (kind, shopper_id, template_id, at) "
               "SELECT 'added', shopper_id, template_id, created_at FROM palm_templates "
               "ORDER BY template_id")


def downgrade() -> None:
    """Drop the log."""
    op.drop_table("palm_template_changes")
