"""Staffed checkout, till and disputes: claims, corrections, flag resolutions, age checks,
cash drawers, tenders, disputes and amended receipts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_ID = sa.String(64)


def upgrade() -> None:
    """Create the staffed-checkout, till and dispute tables."""
    _staffed_tables()
    _till_tables()
    _dispute_tables()


def _staffed_tables() -> None:
    op.create_table(
        "staff_claims",
        sa.Column("session_id", _ID, primary_key=True),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("claimed_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "cart_corrections",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("quantity_before", sa.BigInteger(), nullable=False),
        sa.Column("quantity_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("corrected_at", TS, nullable=False),
    )
    op.create_index("ix_cart_corrections_session_id", "cart_corrections", ["session_id"])
    op.create_table(
        "flag_resolutions",
        sa.Column("session_id", _ID, primary_key=True),
        sa.Column("device_id", _ID, primary_key=True),
        sa.Column("device_seq", sa.BigInteger(), primary_key=True),
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("note", sa.String(300), nullable=False),
        sa.Column("resolved_at", TS, nullable=False),
    )
    op.create_table(
        "age_checks",
        sa.Column("session_id", _ID, primary_key=True),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("checked_at", TS, nullable=False),
    )


def _till_tables() -> None:
    op.create_table(
        "cash_drawers",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("till_id", _ID, nullable=False),
        sa.Column("open_till", _ID, nullable=True, unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("float_minor", sa.BigInteger(), nullable=False),
        sa.Column("opened_by", _ID, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_by", _ID, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("expected_minor", sa.BigInteger(), nullable=True),
        sa.Column("counted_minor", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_cash_drawers_till_id", "cash_drawers", ["till_id"])
    op.create_table(
        "tenders",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("tendered_minor", sa.BigInteger(), nullable=False),
        sa.Column("change_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("till_id", _ID, nullable=False),
        sa.Column("drawer_id", _ID, nullable=True),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("authorization_id", sa.String(128), nullable=True),
        sa.Column("capture_id", sa.String(128), nullable=True),
        sa.Column("failure_reason", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_tenders_session_id", "tenders", ["session_id"])
    op.create_index("ix_tenders_drawer_id", "tenders", ["drawer_id"])


def _dispute_tables() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("dispute_key", sa.String(128), nullable=False, unique=True),
        sa.Column("receipt_id", _ID, nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refund_minor", sa.BigInteger(), nullable=False),
        sa.Column("cash_refund_minor", sa.BigInteger(), nullable=False),
        sa.Column("drawer_id", _ID, nullable=True),
        sa.Column("refund_parts", sa.JSON(), nullable=False),
        sa.Column("amended_receipt_id", _ID, nullable=False),
        sa.Column("failure_reason", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_disputes_receipt_id", "disputes", ["receipt_id"])
    op.create_index("ix_disputes_drawer_id", "disputes", ["drawer_id"])
    op.create_table(
        "amended_receipts",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("original_receipt_id", _ID, nullable=False),
        sa.Column("amends_receipt_id", _ID, nullable=False, unique=True),
        sa.Column("dispute_id", _ID, nullable=False, unique=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("refund_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
    )
    op.create_index("ix_amended_receipts_original_receipt_id", "amended_receipts",
                    ["original_receipt_id"])


def downgrade() -> None:
    """Drop the tables created by upgrade."""
    for table in ("amended_receipts", "disputes", "tenders", "cash_drawers", "age_checks",
                  "flag_resolutions", "cart_corrections", "staff_claims"):
        op.drop_table(table)
