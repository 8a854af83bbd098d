"""Shopper accounts and the privacy portal: credentials, session tokens, consents, choices,
palm enrolments (with last use), data exports and app entry codes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_ID = sa.String(64)


def upgrade() -> None:
    """Create the account and privacy tables."""
    op.create_table(
        "shopper_accounts",
        sa.Column("shopper_id", _ID, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "shopper_auth_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("shopper_id", _ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_shopper_auth_sessions_shopper_id", "shopper_auth_sessions",
                    ["shopper_id"])
    op.create_table(
        "biometric_consents",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("shopper_id", _ID, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("text_version", sa.String(32), nullable=False),
        sa.Column("given_at", TS, nullable=False),
        sa.Column("withdrawn_at", TS, nullable=True),
    )
    op.create_index("ix_biometric_consents_shopper_id", "biometric_consents", ["shopper_id"])
    op.create_table(
        "privacy_choices",
        sa.Column("shopper_id", _ID, primary_key=True),
        sa.Column("recommendations_opt_out", sa.Boolean(), nullable=False),
        sa.Column("palm_retention_days", sa.Integer(), nullable=False),
        sa.Column("trip_retention_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    _palm_and_export_tables()


def _palm_and_export_tables() -> None:
    op.create_table(
        "palm_enrolments",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("shopper_id", _ID, nullable=False),
        sa.Column("template_ids", sa.JSON(), nullable=False),
        sa.Column("store_id", _ID, nullable=True),
        sa.Column("enrolled_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("last_used_store", _ID, nullable=True),
    )
    op.create_index("ix_palm_enrolments_shopper_id", "palm_enrolments", ["shopper_id"])
    op.create_table(
        "privacy_exports",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("shopper_id", _ID, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("archive", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
    )
    op.create_index("ix_privacy_exports_shopper_id", "privacy_exports", ["shopper_id"])
    op.create_table(
        "entry_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("shopper_id", _ID, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )
    op.create_index("ix_entry_codes_shopper_id", "entry_codes", ["shopper_id"])


def downgrade() -> None:
    """Drop the account and privacy tables."""
    for table in ("entry_codes", "privacy_exports", "palm_enrolments", "privacy_choices",
                  "biometric_consents", "shopper_auth_sessions", "shopper_accounts"):
        op.drop_table(table)
