"""SQL implementation of identity's TemplateRepository port.

Tables ``palm_templates`` (encrypted templates) and ``palm_template_changes``
(their change log, replayed by every API worker into its in-memory index).
Template writes take a transaction-scoped advisory lock on PostgreSQL so that
change-log positions become visible in increasing order: a reader can never
pass position 8 while 7 is still uncommitted and then miss it. SQLite
serialises writers by itself. Writes of one shopper's palm data (enrolment, palm and
account deletion, consent withdrawal) also lock that shopper's row first
(:func:`lock_shopper`), always before the advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from identity.repository import TemplateChanges, TemplateRecord
from storefront.db.models import PalmTemplate, PalmTemplateChange, Shopper

_LOCK_KEY = 0x7A1A7E5  # arbitrary advisory-lock key of template writes
_CHANGES_PER_CALL = 5000
_IDS_PER_QUERY = 500  # bound parameters per IN (...) list


class SqlTemplateRepository:
    """Encrypted templates in the database; the FAISS index is rebuilt from these rows."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, records: Sequence[TemplateRecord]) -> None:
        """Store ``records`` and their change-log rows atomically (all or nothing)."""
        with self._sessions.begin() as db:
            write_templates(db, records)

    def all(self) -> Iterator[TemplateRecord]:
        """Every stored template, in batches, ordered by template id."""
        with self._sessions() as db:
            rows = db.execute(sa.select(PalmTemplate).order_by(PalmTemplate.template_id)
                              .execution_options(yield_per=1000)).scalars()
            for row in rows:
                yield _record(row)

    def delete_subject(self, subject_id: str) -> int:
        """Delete every template of ``subject_id`` and log it; returns how many rows went.
        Serialised on the shopper's row (:func:`lock_shopper`) against enrolments."""
        with self._sessions.begin() as db:
            lock_shopper(db, subject_id)
            return remove_subject_rows(db, subject_id)

    def delete_templates(self, template_ids: Sequence[str]) -> int:
        """Delete the templates of ``template_ids`` (unknown ids ignored) in one transaction;
        returns how many rows went.

        Logged like :meth:`identity.repository.TemplateRepository.delete_templates`: each
        shopper that lost a row is logged ``removed``, then each of their remaining rows
        ``added`` again, so every worker drops the deleted ones (a deleted row is never
        replayed as added: :meth:`changes_since` returns only rows still stored). The
        shopper's data key is not touched.
        """
        wanted = list(dict.fromkeys(template_ids))
        with self._sessions.begin() as db:
            _serialise_writers(db)
            owners: set[str] = set()
            deleted = 0
            for chunk in _chunks(wanted):
                owners.update(db.scalars(sa.select(PalmTemplate.shopper_id)
                                         .where(PalmTemplate.template_id.in_(chunk))))
                result = db.execute(sa.delete(PalmTemplate)
                                    .where(PalmTemplate.template_id.in_(chunk)))
                deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
            _log_replaced(db, sorted(owners))
            return deleted

    def of_subjects(self, subject_ids: Sequence[str]) -> list[TemplateRecord]:
        """Every stored template of the given shoppers (unknown ids give none)."""
        wanted = list(dict.fromkeys(subject_ids))
        if not wanted:
            return []
        with self._sessions() as db:
            rows = db.scalars(sa.select(PalmTemplate)
                              .where(PalmTemplate.shopper_id.in_(wanted))
                              .order_by(PalmTemplate.shopper_id, PalmTemplate.template_id)).all()
            return [_record(r) for r in rows]

    def head(self) -> int:
        """The newest change-log position (0 when empty)."""
        with self._sessions() as db:
            return int(db.scalar(sa.select(sa.func.max(PalmTemplateChange.seq))) or 0)

    def changes_since(self, cursor: int) -> TemplateChanges:
        """Up to 5,000 changes after ``cursor``, with the templates still stored."""
        with self._sessions() as db:
            changes = db.scalars(sa.select(PalmTemplateChange)
                                 .where(PalmTemplateChange.seq > cursor)
                                 .order_by(PalmTemplateChange.seq)
                                 .limit(_CHANGES_PER_CALL)).all()
            if not changes:
                return TemplateChanges((), (), cursor)
            wanted = [c.template_id for c in changes if c.kind == "added" and c.template_id]
            rows = db.scalars(sa.select(PalmTemplate)
                              .where(PalmTemplate.template_id.in_(wanted))).all() if wanted else []
            removed = tuple(c.shopper_id for c in changes if c.kind == "removed")
            return TemplateChanges(tuple(_record(r) for r in rows), removed, changes[-1].seq)


def _record(row: PalmTemplate) -> TemplateRecord:
    return TemplateRecord(template_id=row.template_id, subject_id=row.shopper_id,
                          ciphertext=row.ciphertext, created_at=row.created_at)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[start : start + _IDS_PER_QUERY]


def _log_replaced(db: Session, shopper_ids: list[str]) -> None:
    """Log each shopper as ``removed``, then their remaining rows as ``added`` (replayed in
    order by every worker: the shopper is dropped, what remains is indexed again)."""
    at = datetime.now(UTC)
    for shopper_id in shopper_ids:
        db.add(PalmTemplateChange(kind="removed", shopper_id=shopper_id, template_id=None,
                                  at=at))
        db.flush()  # the removal gets the lower change-log position
        remaining = db.scalars(sa.select(PalmTemplate.template_id)
                               .where(PalmTemplate.shopper_id == shopper_id)
                               .order_by(PalmTemplate.template_id)).all()
        for template_id in remaining:
            db.add(PalmTemplateChange(kind="added", shopper_id=shopper_id,
                                      template_id=template_id, at=at))
    db.flush()


def write_templates(db: Session, records: Sequence[TemplateRecord]) -> None:
    """Add ``records`` and their ``added`` change-log rows to ``db``'s transaction (after
    the template writers' lock)."""
    _serialise_writers(db)
    db.add_all(PalmTemplate(template_id=r.template_id, shopper_id=r.subject_id,
                            ciphertext=r.ciphertext, created_at=r.created_at)
               for r in records)
    db.add_all(PalmTemplateChange(kind="added", shopper_id=r.subject_id,
                                  template_id=r.template_id, at=r.created_at)
               for r in records)


def remove_subject_rows(db: Session, subject_id: str) -> int:
    """Delete every template of ``subject_id`` in ``db``'s transaction and log a
    ``removed`` change (after the template writers' lock); returns how many rows went."""
    _serialise_writers(db)
    result = db.execute(sa.delete(PalmTemplate).where(PalmTemplate.shopper_id == subject_id))
    db.add(PalmTemplateChange(kind="removed", shopper_id=subject_id, template_id=None,
                              at=datetime.now(UTC)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def lock_shopper(db: Session, shopper_id: str) -> bool:
    """Lock the shopper's row for ``db``'s transaction; False when there is no such shopper.

    PostgreSQL: ``SELECT ... FOR UPDATE`` of the row. SQLite: a no-op UPDATE of the row
    opens the write transaction (the database's write lock, see
    :mod:`storefront.db.engine`). Every write of a shopper's palm data or palm consent
    takes it first (before :func:`_serialise_writers`), so an enrolment's final write and
    a consent withdrawal, palm deletion or account deletion run one after the other.
    """
    if db.get_bind().dialect.name == "sqlite":
        db.execute(sa.update(Shopper).where(Shopper.id == shopper_id)
                   .values(display_name=Shopper.display_name))
    return db.scalar(sa.select(Shopper.id).where(Shopper.id == shopper_id)
                     .with_for_update()) is not None


def _serialise_writers(db: Session) -> None:
    if db.get_bind().dialect.name == "postgresql":
        db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
