"""The final write of a palm enrolment: checked and written in one transaction.

Image work takes seconds, and the shopper may withdraw consent, delete palms or delete
the account meanwhile. :class:`GuardedEnrolmentWrite` is the ``store`` step of
:meth:`identity.service.IdentityService.enrol`: in one transaction it locks the shopper's
row (:func:`storefront.templates_repo.lock_shopper`, which consent withdrawal and every
palm or account deletion take too), then checks that the shopper still exists, uses the
enrolment code (staff-assisted enrolment), records a consent given with the enrolment,
checks that a consent is open and that none was withdrawn and no palm data deleted since
the enrolment started, and only then writes the templates and the palm record. A lost race
raises NotFound, ConsentRequired or Conflict with nothing stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from identity.keyring import BLOB_VERSION as KEYRING_BLOB_VERSION
from identity.repository import TemplateRecord
from storefront.db.models import (
    BiometricConsent,
    PalmEnrolment,
    PalmTemplate,
    PalmTemplateChange,
    SubjectKey,
)
from storefront.errors import Conflict, NotFound
from storefront.privacy.consent import PALM_PURPOSE, ConsentRequired, has_consent
from storefront.privacy.one_time_codes import (
    ENROLMENT,
    EnrolmentCodeRefused,
    refused_reason,
    use_code,
)
from storefront.templates_repo import lock_shopper, write_templates

DELETED_MEANWHILE = ("palm data of this shopper was deleted while the enrolment ran; "
                     "nothing was stored: enrol again if wanted")


@dataclass(frozen=True)
class EnrolmentStart:
    """What the final write compares with: the change-log position and the number of
    withdrawn consents of the shopper when the enrolment started."""

    seq: int
    withdrawn: int


def _withdrawn(db: Session, shopper_id: str) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(BiometricConsent).where(
        BiometricConsent.shopper_id == shopper_id, BiometricConsent.purpose == PALM_PURPOSE,
        BiometricConsent.withdrawn_at.is_not(None))) or 0)


def enrolment_start(sessions: sessionmaker[Session], shopper_id: str) -> EnrolmentStart:
    """The :class:`EnrolmentStart` of an enrolment of ``shopper_id`` beginning now."""
    with sessions() as db:
        seq = int(db.scalar(sa.select(sa.func.max(PalmTemplateChange.seq))) or 0)
        return EnrolmentStart(seq, _withdrawn(db, shopper_id))


@dataclass
class GuardedEnrolmentWrite:
    """Callable ``store`` step (see module); ``palm_id`` is set once the write committed.

    ``consent_text_version``: a consent given with this enrolment, recorded in the same
    transaction as done by ``recorded_by`` (``shopper:<id>`` or ``staff:<id>``).
    ``enrolment_code``: the shopper's code (staff-assisted enrolment), used up in the same
    transaction (EnrolmentCodeRefused when no longer usable).
    """

    sessions: sessionmaker[Session]
    shopper_id: str
    start: EnrolmentStart
    at: datetime
    store_id: str | None = None
    consent_text_version: str | None = None
    recorded_by: str | None = None
    enrolment_code: str | None = None
    palm_id: str | None = None

    def __call__(self, records: Sequence[TemplateRecord]) -> None:
        """Check (see module) and write ``records`` and the palm record, or raise
        NotFound / EnrolmentCodeRefused / ConsentRequired / Conflict with nothing stored."""
        palm_id = f"palm_{uuid.uuid4().hex}"
        with self.sessions.begin() as db:
            self._check(db, records)
            write_templates(db, records)
            db.add(PalmEnrolment(id=palm_id, shopper_id=self.shopper_id,
                                 template_ids=[r.template_id for r in records],
                                 store_id=self.store_id, enrolled_at=self.at))
        self.palm_id = palm_id

    def _check(self, db: Session, records: Sequence[TemplateRecord]) -> None:
        sid = self.shopper_id
        if not lock_shopper(db, sid):
            raise NotFound(f"shopper {sid!r} does not exist (deleted while the enrolment ran)")
        if self.enrolment_code is not None and use_code(
                db, self.enrolment_code, purpose=ENROLMENT, now=self.at, shopper_id=sid) is None:
            raise EnrolmentCodeRefused(refused_reason())
        if _withdrawn(db, sid) > self.start.withdrawn:
            raise ConsentRequired("consent to palm identification was withdrawn while the "
                                  "enrolment ran; nothing was stored")
        if self.consent_text_version is not None:
            db.add(BiometricConsent(id=f"cns_{uuid.uuid4().hex}", shopper_id=sid,
                                    purpose=PALM_PURPOSE, given_at=self.at,
                                    text_version=self.consent_text_version,
                                    recorded_by=self.recorded_by))
        elif not has_consent(db, sid):
            raise ConsentRequired("no consent to palm identification is recorded; nothing "
                                  "was stored")
        removed = db.scalar(sa.select(PalmTemplateChange.seq).where(
            PalmTemplateChange.shopper_id == sid, PalmTemplateChange.kind == "removed",
            PalmTemplateChange.seq > self.start.seq).limit(1))
        keyed = any(r.ciphertext[:1] == bytes([KEYRING_BLOB_VERSION]) for r in records)
        if removed is not None or (keyed and db.get(SubjectKey, sid) is None):
            raise Conflict(DELETED_MEANWHILE)

    def clean_up(self) -> None:
        """After a refusal: the data key the enrolment may have created for a shopper left
        without any template is destroyed (under the shopper's lock)."""
        with self.sessions.begin() as db:
            if not lock_shopper(db, self.shopper_id):
                return
            held = db.scalar(sa.select(PalmTemplate.template_id)
                             .where(PalmTemplate.shopper_id == self.shopper_id).limit(1))
            if held is None:
                db.execute(sa.delete(SubjectKey).where(SubjectKey.subject_id == self.shopper_id))
