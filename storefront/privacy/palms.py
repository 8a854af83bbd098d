"""Enrolled palms as the shopper sees them: when and where enrolled, when last identified.

A "palm" is one enrolment (its template ids); the templates themselves stay in
``palm_templates`` and are never shown. Identification finds a subject, not a
template, so a gate identification marks every palm of the shopper as used.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import PalmEnrolment, PalmTemplate


@dataclass(frozen=True)
class PalmView:
    """One enrolled palm: ``templates`` is how many captures are stored (never the bytes)."""

    id: str
    enrolled_at: datetime
    store_id: str | None
    last_used_at: datetime | None
    last_used_store: str | None
    templates: int


def record_enrolment(sessions: sessionmaker[Session], *, shopper_id: str,
                     template_ids: Sequence[str], store_id: str | None, at: datetime) -> str:
    """Store the palm enrolment of ``template_ids``; returns its id."""
    palm_id = f"palm_{uuid.uuid4().hex}"
    with sessions.begin() as db:
        db.add(PalmEnrolment(id=palm_id, shopper_id=shopper_id, template_ids=list(template_ids),
                             store_id=store_id, enrolled_at=at))
    return palm_id


def mark_palm_used(sessions: sessionmaker[Session], *, shopper_id: str, store_id: str,
                   at: datetime) -> None:
    """Record that the shopper's palm was identified at ``store_id`` at ``at``."""
    with sessions.begin() as db:
        db.execute(sa.update(PalmEnrolment).where(PalmEnrolment.shopper_id == shopper_id)
                   .values(last_used_at=at, last_used_store=store_id))


def palms_of(db: Session, shopper_id: str) -> list[PalmView]:
    """The shopper's palms whose templates are still stored, oldest first."""
    rows = db.scalars(sa.select(PalmEnrolment).where(PalmEnrolment.shopper_id == shopper_id)
                      .order_by(PalmEnrolment.enrolled_at, PalmEnrolment.id)).all()
    stored = set(db.scalars(sa.select(PalmTemplate.template_id)
                            .where(PalmTemplate.shopper_id == shopper_id)))
    views = []
    for row in rows:
        count = sum(1 for t in row.template_ids if t in stored)
        if count:
            views.append(PalmView(row.id, row.enrolled_at, row.store_id, row.last_used_at,
                                  row.last_used_store, count))
    return views
