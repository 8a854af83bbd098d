"""SQL implementation of identity's TemplateRepository port (table ``palm_templates``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from identity.service import TemplateRecord
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import PalmTemplate


class SqlTemplateRepository:
    """Encrypted templates in the database; the FAISS index is rebuilt from these rows."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, records: Sequence[TemplateRecord]) -> None:
        """Store ``records`` atomically (all or nothing)."""
        with self._sessions.begin() as db:
            db.add_all(PalmTemplate(template_id=r.template_id, shopper_id=r.subject_id,
                                    ciphertext=r.ciphertext, created_at=r.created_at)
                       for r in records)

    def all(self) -> Iterator[TemplateRecord]:
        """Every stored template, in batches, ordered by template id."""
        with self._sessions() as db:
            rows = db.execute(sa.select(PalmTemplate).order_by(PalmTemplate.template_id)
                              .execution_options(yield_per=1000)).scalars()
            for row in rows:
                yield TemplateRecord(template_id=row.template_id, subject_id=row.shopper_id,
                                     ciphertext=row.ciphertext, created_at=row.created_at)

    def delete_subject(self, subject_id: str) -> int:
        """Delete every template of ``subject_id``; returns how many rows went."""
        with self._sessions.begin() as db:
            result = db.execute(sa.delete(PalmTemplate)
                                .where(PalmTemplate.shopper_id == subject_id))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
