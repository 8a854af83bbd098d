"""Transparency views of the privacy portal: what is held about the signed-in shopper.

Every function takes the shopper id of the authenticated caller and reads only
rows of that shopper; palm templates are never returned, only their metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.sql_event_store import cart_events
from storefront.clock import as_utc
from storefront.db.models import Receipt, Shopper, ShopperAccount, ShoppingSession
from storefront.errors import NotFound
from storefront.privacy.consent import choices_of
from storefront.privacy.palms import PalmView, palms_of


@dataclass(frozen=True)
class Profile:
    """The shopper's own profile (the payment token is never shown)."""

    id: str
    display_name: str
    email: str | None
    created_at: datetime
    totp_enabled: bool


@dataclass(frozen=True)
class Trip:
    """One trip: entry method, times, status, total (minor units) and its receipt id."""

    session_id: str
    store_id: str
    entry_method: str
    status: str
    opened_at: datetime
    exited_at: datetime | None
    total_minor: int | None
    receipt_id: str | None
    currency: str | None


@dataclass(frozen=True)
class DeviceUse:
    """A store device (gate, smart cart, shelf sensor) that recorded events of the shopper's
    trips: how many events and when last."""

    device_id: str
    events: int
    last_at: datetime


class Portal:
    """Read-only views of one shopper's data."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def profile(self, shopper_id: str) -> Profile:
        """Raises NotFound when the shopper no longer exists."""
        with self._sessions() as db:
            shopper = db.get(Shopper, shopper_id)
            if shopper is None:
                raise NotFound(f"shopper {shopper_id!r} does not exist")
            account = db.get(ShopperAccount, shopper_id)
            return Profile(shopper.id, shopper.display_name,
                           account.email if account else None, shopper.created_at,
                           bool(account and account.totp_enabled))

    def palms(self, shopper_id: str) -> list[PalmView]:
        """Enrolled palms: when, where, last used (never the template)."""
        with self._sessions() as db:
            return palms_of(db, shopper_id)

    def trips(self, shopper_id: str) -> list[Trip]:
        """The shopper's trips, newest first, with receipt ids."""
        with self._sessions() as db:
            rows = db.execute(
                sa.select(ShoppingSession, Receipt.id, Receipt.currency)
                .outerjoin(Receipt, Receipt.session_id == ShoppingSession.id)
                .where(ShoppingSession.shopper_id == shopper_id)
                .order_by(ShoppingSession.opened_at.desc())).all()
            return [Trip(s.id, s.store_id, s.entry_method, s.status, s.opened_at, s.exited_at,
                         s.total_minor, rid, cur) for s, rid, cur in rows]

    def devices(self, shopper_id: str) -> list[DeviceUse]:
        """Devices whose events are part of the shopper's trips, most used first."""
        with self._sessions() as db:
            sessions = sa.select(ShoppingSession.id).where(
                ShoppingSession.shopper_id == shopper_id).scalar_subquery()
            rows = db.execute(
                sa.select(cart_events.c.device_id, sa.func.count(),
                          sa.func.max(cart_events.c.recorded_at))
                .where(cart_events.c.session_id.in_(sessions),
                       cart_events.c.device_id.is_not(None))
                .group_by(cart_events.c.device_id)
                .order_by(sa.func.count().desc(), cart_events.c.device_id)).all()
            return [DeviceUse(d, int(n), as_utc(last)) for d, n, last in rows]

    def choices(self, shopper_id: str) -> dict[str, Any]:
        """Recommendation opt-out and retention periods (days; None = kept while needed)."""
        with self._sessions() as db:
            row = choices_of(db, shopper_id)
            return {"recommendations_opt_out": row.recommendations_opt_out,
                    "palm_retention_days": row.palm_retention_days,
                    "trip_retention_days": row.trip_retention_days}

