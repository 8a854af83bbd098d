"""Per-shopper retention: palm data deleted after N days without use (default 730) and
finished trips detached from the shopper after M days (off unless chosen).

``storefront privacy sweep`` runs :meth:`RetentionService.sweep`, and ``storefront
serve`` runs it periodically (:mod:`storefront.privacy.scheduler`); running it again
deletes nothing more (idempotent), so two processes may sweep the same database.
Stored data-export archives go too: expired ones always, and every archive of a
shopper requested before a sweep that deleted their palms or detached their trips
(the archive holds that data). Entry and enrolment codes used or expired more than a
day ago are deleted (:func:`storefront.privacy.one_time_codes.purge_spent`: a used code
row would tie a detached trip to the shopper). "Use" is the last identification at a
gate (``palm_enrolments.last_used_at``), else the enrolment time. Trips are
detached as on account deletion (:func:`storefront.privacy.deletion.detach_trips`):
the receipts stay, anonymised, for the accounting retention period. Failed-attempt rows
past their window (:mod:`storefront.security.attempts`: hashes of e-mail addresses,
staff ids and client addresses) are deleted too, all of them, so a burst of failures
followed by silence does not leave its rows behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock, as_utc
from storefront.db.models import PalmEnrolment, PalmTemplate, PrivacyChoice, ShoppingSession
from storefront.errors import InvalidInput
from storefront.privacy.consent import DEFAULT_PALM_RETENTION_DAYS, choices_of
from storefront.privacy.deletion import FINISHED, DeletionService, detach_trips
from storefront.privacy.one_time_codes import purge_spent
from storefront.security.attempts_sql import purge_expired_attempts

if TYPE_CHECKING:
    from storefront.privacy.export import ExportService

MAX_DAYS = 3650


@dataclass
class SweepReport:
    """What one sweep did: shoppers whose palms were deleted, trips detached, stored
    export archives deleted (expired, or holding what the sweep removed), used or expired
    entry and enrolment code rows deleted."""

    palms_deleted_for: list[str] = field(default_factory=list)
    templates_deleted: int = 0
    trips_detached: int = 0
    archives_deleted: int = 0
    codes_deleted: int = 0
    failed_attempts_deleted: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (printed by the CLI)."""
        return {"palms_deleted_for": len(self.palms_deleted_for),
                "templates_deleted": self.templates_deleted,
                "trips_detached": self.trips_detached,
                "archives_deleted": self.archives_deleted,
                "codes_deleted": self.codes_deleted,
                "failed_attempts_deleted": self.failed_attempts_deleted}


class RetentionService:
    """Set retention periods and apply them."""

    def __init__(self, *, sessions: sessionmaker[Session], deletion: DeletionService,
                 clock: Clock, exports: ExportService | None = None) -> None:
        self._sessions = sessions
        self._deletion = deletion
        self._clock = clock
        self._exports = exports

    def set_periods(self, *, shopper_id: str, palm_days: int,
                    trip_days: int | None) -> None:
        """Store the periods in days (1-3650; ``trip_days`` None keeps trips).

        Raises InvalidInput outside the range.
        """
        for name, days in (("palm_retention_days", palm_days), ("trip_retention_days", trip_days)):
            if days is not None and not 1 <= days <= MAX_DAYS:
                raise InvalidInput(f"{name} must be 1-{MAX_DAYS} days")
        with self._sessions.begin() as db:
            row = choices_of(db, shopper_id)
            row.palm_retention_days = palm_days
            row.trip_retention_days = trip_days
            row.updated_at = self._clock()
            db.merge(row)

    def sweep(self) -> SweepReport:
        """Apply every shopper's periods now, delete spent entry and enrolment codes and
        failed-attempt rows past their window, then the stored export archives that
        expired or hold what this sweep removed; idempotent."""
        now, report = self._clock(), SweepReport()
        touched: set[str] = set()
        for shopper_id in self._stale_palm_owners(now):
            done = self._deletion.delete_all_palms(shopper_id=shopper_id,
                                                   actor="system:retention")
            report.palms_deleted_for.append(shopper_id)
            report.templates_deleted += done.deleted["templates"]
            report.archives_deleted += done.deleted.get("exports", 0)  # ended with the palms
            touched.add(shopper_id)
        with self._sessions.begin() as db:
            for shopper_id, days in db.execute(sa.select(PrivacyChoice.shopper_id,
                                                         PrivacyChoice.trip_retention_days)
                                               .where(PrivacyChoice.trip_retention_days
                                                      .is_not(None))).all():
                old = list(db.scalars(sa.select(ShoppingSession.id).where(
                    ShoppingSession.shopper_id == shopper_id,
                    ShoppingSession.status == FINISHED,
                    ShoppingSession.opened_at < now - timedelta(days=days or 0))))
                detached = detach_trips(db, shopper_id, old)["trips"]
                report.trips_detached += detached
                if detached:
                    touched.add(shopper_id)
            report.codes_deleted = purge_spent(db, now)
            report.failed_attempts_deleted = purge_expired_attempts(db, now)
        if self._exports is not None:
            swept = self._clock()  # any export requested until now may hold what went
            for shopper_id in sorted(touched):
                report.archives_deleted += self._exports.drop_archives(shopper_id, before=swept)
            report.archives_deleted += self._exports.purge_expired()
        return report

    def _stale_palm_owners(self, now: datetime) -> list[str]:
        with self._sessions() as db:
            owners = list(db.scalars(sa.select(PalmTemplate.shopper_id).distinct()))
            stale = []
            for shopper_id in owners:
                last = db.scalar(sa.select(sa.func.max(sa.func.coalesce(
                    PalmEnrolment.last_used_at, PalmEnrolment.enrolled_at)))
                    .where(PalmEnrolment.shopper_id == shopper_id))
                if last is None:  # enrolled before migration 0008: the template's own time
                    last = db.scalar(sa.select(sa.func.max(PalmTemplate.created_at))
                                     .where(PalmTemplate.shopper_id == shopper_id))
                days = choices_of(db, shopper_id).palm_retention_days
                if last is not None and as_utc(last) <= now - timedelta(days=days):
                    stale.append(shopper_id)
            return stale



__all__ = ["DEFAULT_PALM_RETENTION_DAYS", "RetentionService", "SweepReport"]
