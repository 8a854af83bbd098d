"""Erase palm data and accounts; detach trips from a shopper (kept anonymised for accounting).

Deleting palms removes the encrypted templates and logs the removal in
``palm_template_changes``, which every API worker replays into its in-memory
index before its next identification, so the palm is not identified anywhere.
Deleting an account erases the personal data and keeps the accounting records
(receipts, payments, tenders, disputes) under a fresh random pseudonym per trip;
``docs/privacy.md`` lists exactly what is kept and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.sql_event_store import cart_events
from identity.service import IdentityService
from storefront.clock import Clock
from storefront.db.models import (
    BiometricConsent,
    EntryCode,
    PalmEnrolment,
    PalmTemplate,
    PalmTemplateChange,
    Payment,
    PrivacyChoice,
    PrivacyExport,
    Receipt,
    Shopper,
    ShopperAccount,
    ShopperAuthSession,
    ShoppingSession,
)
from storefront.errors import Conflict, NotFound
from storefront.security.audit import Audit
from storefront.templates_repo import _serialise_writers

FINISHED = "settled"  # the only session status whose trip is over and paid


@dataclass(frozen=True)
class DeletionConfirmation:
    """What was erased (``deleted``: item -> count) and what was kept anonymised."""

    what: str
    at: datetime
    deleted: dict[str, int]
    kept_anonymised: dict[str, int] = field(default_factory=dict)


def detach_trips(db: Session, shopper_id: str, session_ids: Sequence[str]) -> dict[str, int]:
    """Cut ``session_ids`` (finished trips of ``shopper_id``) off the shopper.

    Receipts, payments and the session row keep their amounts under a new random
    pseudonym per trip (no link to the shopper or between trips); the cart
    event log of the trips (device and shopper ids in its payloads) is deleted.
    Returns counts of the rows changed.
    """
    counts = {"trips": 0, "receipts": 0, "payments": 0, "cart_events": 0}
    for session_id in session_ids:
        alias = f"erased_{uuid.uuid4().hex}"
        targets = ((Receipt.session_id, Receipt.shopper_id, "receipts"),
                   (Payment.session_id, Payment.shopper_id, "payments"),
                   (ShoppingSession.id, ShoppingSession.shopper_id, "trips"))
        for by_session, owner, key in targets:
            result = db.execute(sa.update(by_session.class_)
                                .where(by_session == session_id, owner == shopper_id)
                                .values(shopper_id=alias))
            counts[key] += int(result.rowcount or 0)  # type: ignore[attr-defined]
        result = db.execute(sa.delete(cart_events).where(cart_events.c.session_id == session_id))
        counts["cart_events"] += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts


class DeletionService:
    """Delete one palm, all palms, or the whole account of a shopper."""

    def __init__(self, *, sessions: sessionmaker[Session], identity: IdentityService,
                 clock: Clock, audit: Audit | None = None) -> None:
        self._audit = audit
        self._sessions = sessions
        self._identity = identity
        self._clock = clock

    def _audited(self, shopper_id: str, actor: str,
                 done: DeletionConfirmation) -> DeletionConfirmation:
        if self._audit is not None:
            self._audit.record(actor=actor, action="delete", subject=f"shopper:{shopper_id}",
                               details={"what": done.what, **done.deleted})
        return done

    def delete_palm(self, *, shopper_id: str, palm_id: str,
                    actor: str = "shopper") -> DeletionConfirmation:
        """Delete one enrolled palm of the shopper; raises NotFound for another's palm.

        Written to the audit log (when wired) as done by ``actor``.
        """
        with self._sessions.begin() as db:
            _serialise_writers(db)
            row = db.get(PalmEnrolment, palm_id)
            if row is None or row.shopper_id != shopper_id:
                raise NotFound(f"palm {palm_id!r} does not exist")
            result = db.execute(sa.delete(PalmTemplate).where(
                PalmTemplate.shopper_id == shopper_id,
                PalmTemplate.template_id.in_(row.template_ids)))
            at = self._clock()
            # Replayed in order by every worker: drop the subject, re-add what remains.
            db.add(PalmTemplateChange(kind="removed", shopper_id=shopper_id, at=at))
            db.flush()
            for template_id in db.scalars(sa.select(PalmTemplate.template_id)
                                          .where(PalmTemplate.shopper_id == shopper_id)):
                db.add(PalmTemplateChange(kind="added", shopper_id=shopper_id,
                                          template_id=template_id, at=at))
            db.delete(row)
            templates = int(result.rowcount or 0)  # type: ignore[attr-defined]
        self._identity.refresh()
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "palm", at, {"palms": 1, "templates": templates}))

    def delete_all_palms(self, *, shopper_id: str,
                         actor: str = "shopper") -> DeletionConfirmation:
        """Delete every palm of the shopper (templates, index entries, enrolment records)."""
        templates = self._identity.delete(subject_id=shopper_id)
        with self._sessions.begin() as db:
            result = db.execute(sa.delete(PalmEnrolment)
                                .where(PalmEnrolment.shopper_id == shopper_id))
            palms = int(result.rowcount or 0)  # type: ignore[attr-defined]
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "all palms", self._clock(), {"palms": palms, "templates": templates}))

    def delete_account(self, *, shopper_id: str,
                       actor: str = "shopper") -> DeletionConfirmation:
        """Erase the shopper's personal data; keep accounting records anonymised.

        Raises NotFound (no such shopper) or Conflict while a trip is not settled
        (it must be paid, or settled at the staffed checkout, first).
        """
        with self._sessions() as db:
            if db.get(Shopper, shopper_id) is None:
                raise NotFound(f"shopper {shopper_id!r} does not exist")
            trips = list(db.scalars(sa.select(ShoppingSession.id)
                                    .where(ShoppingSession.shopper_id == shopper_id)))
            unsettled = db.scalar(sa.select(sa.func.count()).where(
                ShoppingSession.shopper_id == shopper_id, ShoppingSession.status != FINISHED))
        if unsettled:
            raise Conflict(f"{unsettled} trip(s) are not settled yet; pay or settle them at "
                           "the staffed checkout before deleting the account")
        palms = self.delete_all_palms(shopper_id=shopper_id, actor=actor)
        with self._sessions.begin() as db:
            kept = detach_trips(db, shopper_id, trips)
            deleted = {"palms": palms.deleted["palms"], "templates": palms.deleted["templates"]}
            for model in (ShopperAuthSession, BiometricConsent, PrivacyChoice, PrivacyExport,
                          EntryCode, ShopperAccount):
                result = db.execute(sa.delete(model).where(model.shopper_id == shopper_id))
                deleted[model.__tablename__] = int(result.rowcount or 0)  # type: ignore[attr-defined]
            kept.update(_detach_payments(db, shopper_id))
            db.execute(sa.delete(Shopper).where(Shopper.id == shopper_id))
            deleted["cart_events"] = kept.pop("cart_events")
            deleted["shoppers"] = 1
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "account", self._clock(), deleted, kept))


def _detach_payments(db: Session, shopper_id: str) -> dict[str, int]:
    """Payments of the shopper outside any recorded trip, under one pseudonym each."""
    ids = list(db.scalars(sa.select(Payment.id).where(Payment.shopper_id == shopper_id)))
    for payment_id in ids:
        db.execute(sa.update(Payment).where(Payment.id == payment_id)
                   .values(shopper_id=f"erased_{uuid.uuid4().hex}"))
    return {"other_payments": len(ids)}
