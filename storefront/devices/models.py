"""Tables of the device gateway: the device registry, its audit log and its inbox.

Device keys are stored encrypted (see :mod:`storefront.devices.keys`); device broker
passwords are not stored here at all (the broker keeps their PBKDF2 hashes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from storefront.db.models import Base, UtcDateTime


class Device(Base):
    """A registered device; ``key_ciphertext`` is its HMAC key sealed under the KEK ``kek_id``.

    ``clock_offset_ms`` is the latest offset of the device's clock from the gateway's
    (positive: the device is ahead), as seen in its signed frames.
    """

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    key_ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary())
    kek_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    clock_offset_ms: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)


class DeviceAudit(Base):
    """A refused device message: who it claimed to be, where it came, and why it was refused."""

    __tablename__ = "device_audit"
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    store_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    device_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    topic: Mapped[str] = mapped_column(sa.String(256))
    reason_code: Mapped[str] = mapped_column(sa.String(64), index=True)
    reason: Mapped[str] = mapped_column(sa.String(500))
    payload_bytes: Mapped[int] = mapped_column(sa.Integer())


class DeviceMessage(Base):
    """The gateway's inbox: each non-item device message once per (device id, device seq).

    Item events are made idempotent by the cart event log itself; gate captures, gate
    events, plate readings and heartbeats are recorded here, with the commands sent in
    reply (``reply``), so a redelivered capture gets the same answer and never opens a
    second session. ``body`` tells a redelivery from other content under the same
    sequence number: the message itself, except for palm captures, which keep only
    ``{"sha256": ...}`` of their canonical body (no palm image is stored here).
    """

    __tablename__ = "device_messages"
    device_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    device_seq: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(16))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    device_time: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(sa.String(32))
    body: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(), nullable=True)
    reply: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(), nullable=True)
