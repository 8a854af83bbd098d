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
from storefront.clock import Clock, as_utc
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
    SubjectKey,
)
from storefront.errors import Conflict, NotFound
from storefront.privacy.archives import PALM_DATA_REASON, end_for_shopper
from storefront.security.audit import Audit
from storefront.templates_repo import _serialise_writers, lock_shopper, remove_subject_rows

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
    pseudonym per trip (no link to the shopper or between trips); the session's entry
    and exit times are cut to the day (UTC), so they no longer match the to-the-
    millisecond time of the gate's ``identify`` audit entry, which names the shopper and
    cannot be edited (see ``docs/privacy.md``); the cart event log of the trips (device
    and shopper ids in its payloads) is deleted. Returns counts of the rows changed.
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
        _to_the_day(db, session_id, alias)
        result = db.execute(sa.delete(cart_events).where(cart_events.c.session_id == session_id))
        counts["cart_events"] += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts


def _to_the_day(db: Session, session_id: str, alias: str) -> None:
    """Cut the entry and exit times of the detached trip ``session_id`` (now under
    ``alias``) to midnight UTC of their day."""
    row = db.get(ShoppingSession, session_id, populate_existing=True)
    if row is None or row.shopper_id != alias:
        return
    row.opened_at = _day(row.opened_at)
    row.exited_at = None if row.exited_at is None else _day(row.exited_at)
    db.flush()


def _day(at: datetime) -> datetime:
    return as_utc(at).replace(hour=0, minute=0, second=0, microsecond=0)


class DeletionService:
    """Delete one palm, all palms, or the whole account of a shopper."""

    def __init__(self, *, sessions: sessionmaker[Session], identity: IdentityService,
                 clock: Clock, audit: Audit | None = None) -> None:
        self._audit = audit
        self._sessions = sessions
        self._identity = identity
        self._clock = clock

    def _audited(self, shopper_id: str, actor: str, done: DeletionConfirmation,
                 note: dict[str, object] | None = None) -> DeletionConfirmation:
        """Record ``done`` (action ``delete``, subject ``shopper:<id>``). The default actor
        ``shopper`` (the shopper acting on their own data) is written ``shopper:<id>``, as
        ``docs/privacy.md`` says; other actors (``staff:<id>``, ``cli``,
        ``system:retention``) as given; ``note``: more details for the entry."""
        if self._audit is not None:
            who = f"shopper:{shopper_id}" if actor == "shopper" else actor
            self._audit.record(actor=who, action="delete", subject=f"shopper:{shopper_id}",
                               details={"what": done.what, **done.deleted, **(note or {})})
        return done

    def delete_palm(self, *, shopper_id: str, palm_id: str,
                    actor: str = "shopper") -> DeletionConfirmation:
        """Delete one enrolled palm of the shopper; raises NotFound for another's palm.

        One transaction, serialised with enrolments and export builds on the shopper's row
        (:func:`storefront.templates_repo.lock_shopper`): the palm's templates and record go
        and, when the shopper has no template left, their data key too (crypto-shredding:
        an earlier backup of the templates becomes unreadable); the shopper's stored export
        archives (they list the palm) are deleted and exports being built end storing
        nothing (:func:`storefront.privacy.archives.end_for_shopper`; their download
        answers 410; ``deleted["exports"]`` counts them when any). Then the in-memory index
        is refreshed and the on-disk index snapshot removed (it held the palm's codes; the
        next start rebuilds it). Written to the audit log (when wired) as done by ``actor``.
        """
        with self._sessions.begin() as db:
            lock_shopper(db, shopper_id)
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
            remaining = list(db.scalars(sa.select(PalmTemplate.template_id)
                                        .where(PalmTemplate.shopper_id == shopper_id)))
            for template_id in remaining:
                db.add(PalmTemplateChange(kind="added", shopper_id=shopper_id,
                                          template_id=template_id, at=at))
            db.delete(row)
            templates = int(result.rowcount or 0)  # type: ignore[attr-defined]
            if not remaining:
                _shred_key(db, shopper_id)
            exports = end_for_shopper(db, shopper_id, PALM_DATA_REASON)
        self._forget()
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "palm", at, _with_exports({"palms": 1, "templates": templates}, exports)))

    def delete_all_palms(self, *, shopper_id: str,
                         actor: str = "shopper") -> DeletionConfirmation:
        """Delete every palm of the shopper: templates, enrolment records and data key in one
        transaction serialised with enrolments and export builds on the shopper's row, which
        also deletes their stored export archives and ends exports being built (as
        :meth:`delete_palm`); then the index entries and the on-disk index snapshot."""
        with self._sessions.begin() as db:
            lock_shopper(db, shopper_id)
            templates = remove_subject_rows(db, shopper_id)
            result = db.execute(sa.delete(PalmEnrolment)
                                .where(PalmEnrolment.shopper_id == shopper_id))
            palms = int(result.rowcount or 0)  # type: ignore[attr-defined]
            _shred_key(db, shopper_id)
            exports = end_for_shopper(db, shopper_id, PALM_DATA_REASON)
        self._forget()
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "all palms", self._clock(),
            _with_exports({"palms": palms, "templates": templates}, exports)))

    def _forget(self) -> None:
        """Apply committed deletions to this process's index; remove the index snapshot."""
        self._identity.refresh()
        self._identity.discard_snapshot()

    def delete_account(self, *, shopper_id: str, actor: str = "shopper",
                       note: dict[str, object] | None = None) -> DeletionConfirmation:
        """Erase the shopper's personal data; keep accounting records anonymised (``note``:
        more details for the audit entry).

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
            if not lock_shopper(db, shopper_id):  # deleted by a concurrent request
                raise NotFound(f"shopper {shopper_id!r} does not exist")
            # An enrolment that wrote after delete_all_palms (serialised on the row) goes too.
            late = remove_subject_rows(db, shopper_id)
            kept = detach_trips(db, shopper_id, trips)
            deleted = {"palms": palms.deleted["palms"],
                       "templates": palms.deleted["templates"] + late}
            for model in (ShopperAuthSession, BiometricConsent, PrivacyChoice, PrivacyExport,
                          EntryCode, ShopperAccount, PalmEnrolment):
                result = db.execute(sa.delete(model).where(model.shopper_id == shopper_id))
                deleted[model.__tablename__] = int(result.rowcount or 0)  # type: ignore[attr-defined]
            kept.update(_detach_payments(db, shopper_id))
            db.execute(sa.delete(Shopper).where(Shopper.id == shopper_id))
            deleted["cart_events"] = kept.pop("cart_events")
            deleted["shoppers"] = 1
            _shred_key(db, shopper_id)
        if late:
            self._forget()
        return self._audited(shopper_id, actor, DeletionConfirmation(
            "account", self._clock(), deleted, kept), note)


def _with_exports(deleted: dict[str, int], exports: int) -> dict[str, int]:
    """``deleted`` plus ``exports`` (archives deleted, builds ended) when there were any."""
    return {**deleted, "exports": exports} if exports else deleted


def _shred_key(db: Session, shopper_id: str) -> None:
    """Delete the shopper's template data key in ``db``'s transaction (it encrypts only
    their templates: every copy of them becomes unreadable)."""
    db.execute(sa.delete(SubjectKey).where(SubjectKey.subject_id == shopper_id))


def _detach_payments(db: Session, shopper_id: str) -> dict[str, int]:
    """Payments of the shopper outside any recorded trip, under one pseudonym each."""
    ids = list(db.scalars(sa.select(Payment.id).where(Payment.shopper_id == shopper_id)))
    for payment_id in ids:
        db.execute(sa.update(Payment).where(Payment.id == payment_id)
                   .values(shopper_id=f"erased_{uuid.uuid4().hex}"))
    return {"other_payments": len(ids)}
