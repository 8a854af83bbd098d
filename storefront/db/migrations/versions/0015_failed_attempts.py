"""Failed attempts counted in the database (``failed_attempts``): the login, sign-up and
enrolment-code limits were counted in each process's memory, so N API workers allowed N
times the limit and a restart forgot every count. One row per failure: the SHA-256 of the
counter's namespace and key (never the e-mail address or client address itself), when it
happened, when it stops counting and whether it is an attempt still under way (``pending``:
counted only briefly, so the rows of a process killed during a check expire). Starts
empty (the counts in memory are not carried).

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
    """Create the table, indexed for counting one key's window (covering the count) and
    for pruning."""
    op.create_table(
        "failed_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(),
                  primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_failed_attempts_key_hash_at", "failed_attempts",
                    ["key_hash", "at", "pending"])
    op.create_index("ix_failed_attempts_expires_at", "failed_attempts", ["expires_at"])


def downgrade() -> None:
    """Drop the table (the counts are lost: every limit starts again from zero)."""
    op.drop_table("failed_attempts")
