"""Failed attempts counted in the database (``failed_attempts``): the login, sign-up and
enrolment-code limits were counted in each process's memory, so N API workers allowed N
times the limit and a restart forgot every count. One row per failure: the SHA-256 of the
counter's namespace and key (never the e-mail address or client address itself), when it
happened and when it stops counting. Starts empty (the counts in memory are not carried).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the table, indexed for counting one key's window and for pruning."""
    op.create_table(
        "failed_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
                  primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_failed_attempts_key_hash_at", "failed_attempts", ["key_hash", "at"])
    op.create_index("ix_failed_attempts_expires_at", "failed_attempts", ["expires_at"])


def downgrade() -> None:
    """Drop the table (the counts are lost: every limit starts again from zero)."""
    op.drop_table("failed_attempts")
