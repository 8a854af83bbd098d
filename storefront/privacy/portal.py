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
from storefront.db.models import (
    AmendedReceipt,
    Dispute,
    Receipt,
    Shopper,
    ShopperAccount,
    ShoppingSession,
)
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
    """One trip: entry method, times, status, total and its receipt id; money in minor units.

    ``total_minor``: the trip's total when it was checked out. Once a line of its receipt
    is disputed: ``refunded_minor``, what the disputes refunded (made, to the card or in
    cash); ``refund_pending_minor``, refunds of disputes whose card refund is still being
    made; ``current_total_minor``, the total of the receipt's latest version (the
    amended receipt), i.e. the receipt's total less both. Without a receipt the refunds
    are 0 and ``current_total_minor`` is None.
    """

    session_id: str
    store_id: str
    entry_method: str
    status: str
    opened_at: datetime
    exited_at: datetime | None
    total_minor: int | None
    receipt_id: str | None
    currency: str | None
    refunded_minor: int = 0
    refund_pending_minor: int = 0
    current_total_minor: int | None = None


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
        """The shopper's trips, newest first, with receipt ids, what disputes of their
        receipts refunded and the total of each receipt's latest version (:class:`Trip`;
        minor units)."""
        with self._sessions() as db:
            rows = db.execute(
                sa.select(ShoppingSession, Receipt.id, Receipt.currency, Receipt.total_minor)
                .outerjoin(Receipt, Receipt.session_id == ShoppingSession.id)
                .where(ShoppingSession.shopper_id == shopper_id)
                .order_by(ShoppingSession.opened_at.desc())).all()
            refunds = _refunds(db, [rid for _s, rid, _c, _t in rows if rid])
            trips = []
            for s, rid, cur, total in rows:
                done, pending, current = refunds.get(rid or "", (0, 0, total))
                trips.append(Trip(s.id, s.store_id, s.entry_method, s.status, s.opened_at,
                                  s.exited_at, s.total_minor, rid, cur, done, pending,
                                  current))
            return trips

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


def _refunds(db: Session, receipt_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """For each of ``receipt_ids`` (originals) that a dispute amended: (refunded, refund
    still being made, total of its latest version), in minor units."""
    if not receipt_ids:
        return {}
    amended = db.execute(sa.select(AmendedReceipt.original_receipt_id,
                                   AmendedReceipt.amends_receipt_id, AmendedReceipt.id,
                                   AmendedReceipt.total_minor)
                         .where(AmendedReceipt.original_receipt_id.in_(receipt_ids))).all()
    if not amended:
        return {}
    nxt = {amends: (rid, total) for _o, amends, rid, total in amended}
    out: dict[str, tuple[int, int, int]] = {}
    for original in {o for o, _a, _r, _t in amended}:
        version, total = original, 0
        while version in nxt:  # the chain of versions, each amending the one before
            version, total = nxt[version]
        out[original] = (0, 0, total)
    for original, state, refund in db.execute(
            sa.select(Dispute.receipt_id, Dispute.state, Dispute.refund_minor)
            .where(Dispute.receipt_id.in_(list(out)))).all():
        done, pending, total = out[original]
        if state == "refunded":
            done += int(refund)
        else:
            pending += int(refund)
        out[original] = (done, pending, total)
    return out
