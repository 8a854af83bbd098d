"""Shopper accounts and palm enrolment."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from stdnum import luhn

from identity.errors import EnrolmentError
from identity.service import Enrolment, IdentityService
from storefront.biometric_audit import audit_enrolment
from storefront.clock import Clock
from storefront.db.models import Shopper
from storefront.errors import InvalidInput, NotFound, StorefrontError
from storefront.privacy.consent import (
    CONSENT_TEXTS,
    CURRENT_TEXT_VERSION,
    ConsentRequired,
    has_consent,
)
from storefront.privacy.enrolment_guard import GuardedEnrolmentWrite, enrolment_start
from storefront.privacy.palms import mark_palm_used
from storefront.security.audit import Audit


def looks_like_card_number(text: str) -> bool:
    """True for anything that could carry a primary account number (PAN).

    Spaces and dashes are ignored. Refused: an all-digit string (no processor
    token is one), and any run of 12-19 digits that passes the Luhn check
    (ISO/IEC 7812), e.g. ``"card 4111 1111 1111 1111"``.
    """
    compact = text.replace(" ", "").replace("-", "")
    if compact.isdigit():
        return True
    return any(luhn.is_valid(run) for run in re.findall(r"\d{12,19}", compact))


@dataclass(frozen=True)
class ShopperView:
    """A shopper as shown to the shopper (the payment token is never shown)."""

    id: str
    display_name: str
    created_at: datetime


class ShopperService:
    """Register shoppers and enrol their palms."""

    def __init__(self, *, sessions: sessionmaker[Session], identity: IdentityService,
                 clock: Clock, audit: Audit | None = None) -> None:
        self._sessions = sessions
        self._audit = audit
        self._identity = identity
        self._clock = clock

    def register(self, *, display_name: str, payment_token: str) -> ShopperView:
        """Create a shopper; ``payment_token`` is a processor token (never a card number)."""
        name = display_name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidInput("display name must be 1-200 characters")
        if not payment_token or len(payment_token) > 200 or looks_like_card_number(payment_token):
            raise InvalidInput("payment token must be a processor token, not a card number")
        shopper = Shopper(id=f"shp_{uuid.uuid4().hex}", display_name=name,
                          payment_token=payment_token, created_at=self._clock())
        with self._sessions.begin() as db:
            db.add(shopper)
        return ShopperView(shopper.id, shopper.display_name, shopper.created_at)

    def get(self, shopper_id: str) -> ShopperView:
        """The shopper; raises NotFound."""
        with self._sessions() as db:
            row = db.get(Shopper, shopper_id)
            if row is None:
                raise NotFound(f"shopper {shopper_id!r} does not exist")
            return ShopperView(row.id, row.display_name, row.created_at)

    def payment_token(self, shopper_id: str) -> str:
        """The shopper's processor token; raises NotFound."""
        with self._sessions() as db:
            row = db.get(Shopper, shopper_id)
            if row is None:
                raise NotFound(f"shopper {shopper_id!r} does not exist")
            return row.payment_token

    def enrol_palm(self, *, shopper_id: str, images: Sequence[bytes],
                   store_id: str | None = None,
                   consent_text_version: str | None = None,
                   actor: str = "system", min_captures: int | None = None,
                   enrolment_code: str | None = None) -> Enrolment:
        """Enrol palm captures (encoded image bytes) for an existing shopper.

        The shopper must have given consent (``storefront.privacy.consent``), or give it
        with this enrolment: ``consent_text_version`` (ticked at an enrolment kiosk, or
        confirmed at the staff point) is recorded as given by ``actor`` in the same
        transaction as the templates, so a refused enrolment records no consent.
        ``enrolment_code``: the shopper's enrolment code (staff-assisted enrolment,
        checked by the caller first), used up in that transaction too. The final write is
        serialised with consent withdrawal and palm or account deletion
        (:mod:`storefront.privacy.enrolment_guard`): one of those committed while the
        images were processed refuses the enrolment with nothing stored.
        The enrolment is written to the audit log as done by ``actor``, with an entry
        for each other person whose templates its duplicate check compared; a refusal
        after that check (palm already enrolled) is written too.
        ``min_captures``: usable captures needed (default: the identity settings').
        Raises NotFound, ConsentRequired, Conflict (palm data deleted meanwhile),
        EnrolmentCodeRefused, InvalidInput (no images, unknown consent text version), and
        identity's InvalidImageError, AcquisitionError or EnrolmentError with the reason.
        """
        self.get(shopper_id)
        if not images:
            raise InvalidInput("at least one palm image is required")
        if consent_text_version is not None and consent_text_version not in CONSENT_TEXTS:
            raise InvalidInput(f"unknown consent text version {consent_text_version!r}; "
                               f"current: {CURRENT_TEXT_VERSION}")
        start = enrolment_start(self._sessions, shopper_id)
        with self._sessions() as db:
            if consent_text_version is None and not has_consent(db, shopper_id):
                raise ConsentRequired("no consent to palm identification is recorded: "
                                      "agree to the consent text first (the kiosk's consent "
                                      "box, or POST /me/consents in the app)")
        write = GuardedEnrolmentWrite(
            self._sessions, shopper_id, start, self._clock(), store_id=store_id,
            consent_text_version=consent_text_version,
            recorded_by=actor if consent_text_version is not None else None,
            enrolment_code=enrolment_code)
        # Each enrolment is one palm the shopper sees and can delete: captures of a palm
        # already enrolled are refused rather than listed twice.
        try:
            result = self._identity.enrol(subject_id=shopper_id, images=images,
                                          add_to_own=False, min_captures=min_captures,
                                          store=write)
        except EnrolmentError as exc:
            if self._audit is not None and (exc.duplicate or exc.compared_subjects):
                audit_enrolment(self._audit, actor=actor, shopper_id=shopper_id,
                                compared=exc.compared_subjects, store_id=store_id,
                                matched=exc.matched_subjects,
                                details={"outcome": "refused", "reason": exc.reason,
                                         "captures": len(images)})
            raise
        except (StorefrontError, IntegrityError) as exc:  # a race lost in the final write
            write.clean_up()
            if isinstance(exc, IntegrityError):  # a data key for a shopper deleted meanwhile
                self.get(shopper_id)  # NotFound then
            raise
        if self._audit is not None:
            audit_enrolment(self._audit, actor=actor, shopper_id=shopper_id,
                            compared=result.compared_subjects, store_id=store_id,
                            details={"outcome": "enrolled", "templates": len(result.template_ids),
                                     "captures": len(images)})
        return result

    def palm_used(self, *, shopper_id: str, store_id: str) -> None:
        """Record that the shopper's palm was identified at ``store_id`` now (for retention)."""
        mark_palm_used(self._sessions, shopper_id=shopper_id, store_id=store_id,
                       at=self._clock())
