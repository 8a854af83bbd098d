"""Consent to biometric enrolment and the recommendations opt-out.

No consent, no enrolment: :func:`has_consent` is checked by
``ShopperService.enrol_palm``. Each consent row records the purpose, the
version of the text the shopper was shown, when it was given or withdrawn, and who
recorded it (``recorded_by``: ``shopper:<id>`` for the shopper's own app, portal or kiosk,
``staff:<id>`` at a staff-assisted enrolment, which needs the shopper's enrolment code;
NULL for rows written before this was recorded) (GDPR Art. 7(1): the controller must be
able to demonstrate consent; Art. 9(2)(a): explicit consent for biometric data).
Withdrawing the palm consent deletes the palm data (``on_withdraw_palm``). Times are
tz-aware UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import BiometricConsent, PrivacyChoice
from storefront.errors import Conflict, InvalidInput
from storefront.templates_repo import lock_shopper

PALM_PURPOSE = "palm_identification"
CONSENT_TEXTS: dict[str, str] = {
    "2026-11": ("I agree that the store stores an encrypted template of my palm and uses it "
                "only to recognise me at its gates and to charge my saved payment method. "
                "I can withdraw this consent at any time; my palm data is then deleted."),
}
CURRENT_TEXT_VERSION = "2026-11"
DEFAULT_PALM_RETENTION_DAYS = 730


class ConsentRequired(Conflict):
    """Palm enrolment was asked for without a recorded, unwithdrawn consent."""

    code = "consent_required"


@dataclass(frozen=True)
class ConsentView:
    """One consent record as shown to the shopper."""

    id: str
    purpose: str
    text_version: str
    text: str
    given_at: datetime
    withdrawn_at: datetime | None


def has_consent(db: Session, shopper_id: str, purpose: str = PALM_PURPOSE) -> bool:
    """True when ``shopper_id`` holds a given, not withdrawn, consent for ``purpose``."""
    row = db.scalar(sa.select(BiometricConsent.id).where(
        BiometricConsent.shopper_id == shopper_id, BiometricConsent.purpose == purpose,
        BiometricConsent.withdrawn_at.is_(None)).limit(1))
    return row is not None


def choices_of(db: Session, shopper_id: str) -> PrivacyChoice:
    """The shopper's stored choices, or the defaults (an unsaved row) when none are stored."""
    row = db.get(PrivacyChoice, shopper_id)
    if row is None:
        row = PrivacyChoice(shopper_id=shopper_id, recommendations_opt_out=False,
                            palm_retention_days=DEFAULT_PALM_RETENTION_DAYS,
                            trip_retention_days=None)
    return row


class ConsentService:
    """Record, list and withdraw consents; record the recommendations opt-out."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock,
                 on_withdraw_palm: Callable[[str], object]) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_withdraw_palm = on_withdraw_palm

    def give(self, *, shopper_id: str, purpose: str, text_version: str,
             recorded_by: str | None = None) -> ConsentView:
        """Record consent to ``purpose`` with the text version shown, given by the shopper
        themself (``recorded_by`` default ``shopper:<id>``, the audit log's actor name).

        Raises InvalidInput for an unknown purpose or text version.
        """
        if purpose != PALM_PURPOSE:
            raise InvalidInput(f"unknown consent purpose {purpose!r}; known: {PALM_PURPOSE}")
        if text_version not in CONSENT_TEXTS:
            raise InvalidInput(f"unknown consent text version {text_version!r}; "
                               f"current: {CURRENT_TEXT_VERSION}")
        row = BiometricConsent(id=f"cns_{uuid.uuid4().hex}", shopper_id=shopper_id,
                               purpose=purpose, text_version=text_version,
                               given_at=self._clock(), withdrawn_at=None,
                               recorded_by=recorded_by or f"shopper:{shopper_id}")
        with self._sessions.begin() as db:
            db.add(row)
        return _view(row)

    def withdraw(self, *, shopper_id: str, purpose: str = PALM_PURPOSE) -> int:
        """Withdraw every open consent to ``purpose``; palm consent also deletes the palms.

        Serialised on the shopper's row with an enrolment's final write and an export
        build's (:func:`storefront.templates_repo.lock_shopper`): an enrolment that has not
        written yet is refused, one written before is deleted with the others; the
        shopper's stored export archives are deleted and exports being built store nothing
        (:func:`storefront.privacy.archives.end_for_shopper`, in the same transaction).
        Returns how many consent records were withdrawn.
        """
        from storefront.privacy.archives import CONSENT_REASON, end_for_shopper  # import cycle

        with self._sessions.begin() as db:
            lock_shopper(db, shopper_id)
            result = db.execute(sa.update(BiometricConsent).where(
                BiometricConsent.shopper_id == shopper_id, BiometricConsent.purpose == purpose,
                BiometricConsent.withdrawn_at.is_(None)).values(withdrawn_at=self._clock()))
            count = int(result.rowcount or 0)  # type: ignore[attr-defined]
            if purpose == PALM_PURPOSE:
                end_for_shopper(db, shopper_id, CONSENT_REASON)
        if purpose == PALM_PURPOSE:
            self._on_withdraw_palm(shopper_id)
        return count

    def history(self, shopper_id: str) -> list[ConsentView]:
        """Every consent record of the shopper, oldest first."""
        with self._sessions() as db:
            rows = db.scalars(sa.select(BiometricConsent)
                              .where(BiometricConsent.shopper_id == shopper_id)
                              .order_by(BiometricConsent.given_at, BiometricConsent.id)).all()
            return [_view(r) for r in rows]

    def set_recommendations_opt_out(self, *, shopper_id: str, opt_out: bool) -> None:
        """Record whether the shopper's history may be used for recommendations or ads."""
        with self._sessions.begin() as db:
            row = choices_of(db, shopper_id)
            row.recommendations_opt_out = opt_out
            row.updated_at = self._clock()
            db.merge(row)

    def may_use_for_recommendations(self, shopper_id: str) -> bool:
        """False when the shopper opted out of recommendations and ads using their history.

        Every feature that profiles shopping history must call this first.
        """
        with self._sessions() as db:
            return not choices_of(db, shopper_id).recommendations_opt_out


def _view(row: BiometricConsent) -> ConsentView:
    return ConsentView(row.id, row.purpose, row.text_version, CONSENT_TEXTS[row.text_version],
                       row.given_at, row.withdrawn_at)

