"""The template repository port: encrypted templates plus a change log.

The repository (a database table in production) is the system of record; each
process's FAISS index is a cache of it. The change log lets every process
replay what others added or deleted since it last looked
(:meth:`identity.service.IdentityService.refresh`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from identity.errors import DuplicateTemplateError


@dataclass(frozen=True)
class TemplateRecord:
    """One stored template: encrypted bytes of a subject, created at a tz-aware UTC time."""

    template_id: str
    subject_id: str
    ciphertext: bytes = field(repr=False)
    created_at: datetime

    def __post_init__(self) -> None:
        if self.created_at.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware")


@dataclass(frozen=True)
class TemplateChanges:
    """What changed after a cursor: templates added (still stored), subjects deleted,
    and the cursor to ask from next time. Removals are applied before additions."""

    added: tuple[TemplateRecord, ...]
    removed_subjects: tuple[str, ...]
    cursor: int


class TemplateRepository(Protocol):
    """Port to the encrypted template table and its change log."""

    def add(self, records: Sequence[TemplateRecord]) -> None:
        """Store all ``records`` or none; raises DuplicateTemplateError on a known id."""
        ...

    def all(self) -> Iterator[TemplateRecord]:
        """Every stored record."""
        ...

    def delete_subject(self, subject_id: str) -> int:
        """Delete every record of ``subject_id``; returns how many were deleted."""
        ...

    def delete_templates(self, template_ids: Sequence[str]) -> int:
        """Delete the records of ``template_ids`` (unknown ids are ignored); returns how many
        were deleted.

        Logged so that other processes' indexes follow: each subject that lost a record
        is logged as removed, then each of its remaining records as added again (so a
        deleted record never reappears as added, and an index that held it drops it). A
        subject left with no record is thereby dropped everywhere, but its data key is
        the caller's to shred (:meth:`identity.service.IdentityService.delete` does both).
        """
        ...

    def of_subjects(self, subject_ids: Sequence[str]) -> list[TemplateRecord]:
        """Every stored record of the given subjects (any order; unknown ids give none)."""
        ...

    def head(self) -> int:
        """The change-log position now (0 when empty)."""
        ...

    def changes_since(self, cursor: int) -> TemplateChanges:
        """Changes logged after ``cursor``, oldest first."""
        ...


class InMemoryTemplateRepository:
    """A thread-safe :class:`TemplateRepository` held in memory (tests, development)."""

    def __init__(self) -> None:
        self._records: dict[str, TemplateRecord] = {}
        self._by_subject: dict[str, set[str]] = {}
        self._log: list[tuple[str, str, str | None]] = []  # (kind, subject, template id)
        self._lock = threading.Lock()

    def add(self, records: Sequence[TemplateRecord]) -> None:
        """Store all ``records`` or none; raises DuplicateTemplateError on a known id."""
        with self._lock:
            ids = [r.template_id for r in records]
            if len(set(ids)) != len(ids) or any(i in self._records for i in ids):
                raise DuplicateTemplateError("a template id is already stored")
            self._records.update((r.template_id, r) for r in records)
            for r in records:
                self._by_subject.setdefault(r.subject_id, set()).add(r.template_id)
            self._log.extend(("added", r.subject_id, r.template_id) for r in records)

    def all(self) -> Iterator[TemplateRecord]:
        """A snapshot of every stored record."""
        with self._lock:
            snapshot = list(self._records.values())
        return iter(snapshot)

    def delete_subject(self, subject_id: str) -> int:
        """Delete every record of ``subject_id``; returns how many were deleted."""
        with self._lock:
            doomed = self._by_subject.pop(subject_id, set())
            for k in doomed:
                del self._records[k]
            self._log.append(("removed", subject_id, None))
            return len(doomed)

    def delete_templates(self, template_ids: Sequence[str]) -> int:
        """Delete the records of ``template_ids`` (unknown ids ignored); returns how many
        were deleted. Logs each subject that lost one as removed, then its remaining
        records as added again (see :meth:`TemplateRepository.delete_templates`)."""
        with self._lock:
            doomed = [self._records.pop(t) for t in dict.fromkeys(template_ids)
                      if t in self._records]
            for subject_id in dict.fromkeys(r.subject_id for r in doomed):
                held = self._by_subject[subject_id]
                held.difference_update(r.template_id for r in doomed)
                if not held:
                    del self._by_subject[subject_id]
                self._log.append(("removed", subject_id, None))
                self._log.extend(("added", subject_id, t) for t in sorted(held))
            return len(doomed)

    def of_subjects(self, subject_ids: Sequence[str]) -> list[TemplateRecord]:
        """Every stored record of the given subjects (unknown ids give none)."""
        with self._lock:
            return [self._records[t] for s in dict.fromkeys(subject_ids)
                    for t in sorted(self._by_subject.get(s, ()))]

    def head(self) -> int:
        """The change-log position now."""
        with self._lock:
            return len(self._log)

    def changes_since(self, cursor: int) -> TemplateChanges:
        """Changes after ``cursor`` (positions are 1-based log entries)."""
        with self._lock:
            entries = self._log[cursor:]
            added = tuple(self._records[t] for kind, _, t in entries
                          if kind == "added" and t in self._records)
            removed = tuple(s for kind, s, _ in entries if kind == "removed")
            return TemplateChanges(added, removed, len(self._log))
