"""Exit lease and priced-cart snapshot on shopping sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the exit claim (lease) columns and the priced-lines snapshot."""
    with op.batch_alter_table("shopping_sessions") as batch:
        batch.add_column(sa.Column("exit_claim", sa.String(64), nullable=True))
        batch.add_column(sa.Column("exit_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("priced_lines", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the columns added by upgrade."""
    with op.batch_alter_table("shopping_sessions") as batch:
        batch.drop_column("priced_lines")
        batch.drop_column("exit_claimed_at")
        batch.drop_column("exit_claim")
