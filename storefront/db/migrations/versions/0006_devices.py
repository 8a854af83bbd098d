"""Store devices over MQTT: the device registry, its audit log and the gateway inbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``devices``, ``device_audit`` and ``device_messages``."""
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_offset_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_devices_store_id", "devices", ["store_id"])
    op.create_table(
        "device_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
    )
    op.create_index("ix_device_audit_at", "device_audit", ["at"])
    op.create_index("ix_device_audit_reason_code", "device_audit", ["reason_code"])
    op.create_table(
        "device_messages",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("device_seq", sa.BigInteger(), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    """Drop the device tables."""
    op.drop_table("device_messages")
    op.drop_index("ix_device_audit_reason_code", table_name="device_audit")
    op.drop_index("ix_device_audit_at", table_name="device_audit")
    op.drop_table("device_audit")
    op.drop_index("ix_devices_store_id", table_name="devices")
    op.drop_table("devices")
