"""Tamper-evident audit log: a SHA-256 hash chain in table ``audit_log``.

Each entry has ``seq`` (1, 2, ...), time, actor, action, subject, details (a JSON
object) and the previous entry's hash (64 zeros for the first). Its hash is SHA-256
(FIPS 180-4) over ``b"storefront-audit/v1\\x00"`` and the canonical JSON (sorted keys,
no whitespace, as :func:`hardware.auth.canonical_json`) of
``{"action", "actor", "at", "details", "prev", "seq", "subject"}``, ``at`` written as
ISO 8601 UTC with microseconds. The hash chain is the construction of Haber and
Stornetta, "How to time-stamp a digital document" (J. Cryptology 3, 1991), as used by
RFC 6962 style logs: changing, removing or reordering any entry breaks every link
after it; removing the newest entries is caught by the head row (``audit_head``),
which :meth:`Audit.verify` also reports so it can be anchored outside the database.

Writers serialise before they read the last entry: on PostgreSQL each append reads the
``audit_head`` row ``FOR UPDATE``; on SQLite it starts with a no-op ``UPDATE`` of that
row, which takes the database's write lock (see :mod:`storefront.db.engine`). So
concurrent writers wait their turn instead of racing. The primary key is the backstop: two writers
that read the same last entry (the very first append, before the head row exists) both
try to insert ``seq + 1`` and the loser retries after a short, randomised pause.

An entry can also join the caller's own transaction (:meth:`Audit.record_in`), so that
it commits or rolls back with the change it records: the writers' lock is then taken
inside that transaction (callers append last, just before they commit, so the lock is
held briefly) and a retry after a lost race rolls back to a savepoint, never the
caller's work.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hardware.auth import canonical_json
from storefront.clock import Clock
from storefront.db.models import AuditEntry, AuditHead
from storefront.errors import Conflict, InvalidInput

GENESIS: Final = "0" * 64
_LABEL: Final = b"storefront-audit/v1\x00"
ACTIONS: Final = frozenset({"enrol", "identify", "verify", "delete", "export", "correction",
                            "refund", "staff_added", "staff_changed", "staff_login", "tender",
                            "tender_settled",
                            "hold_released", "tender_voided", "tender_void_undone",
                            "payment_abandoned", "compare", "bulk_decrypt"})
"""What may be recorded. ``compare``: a person's stored palm templates were decrypted and
compared with a probe during someone else's identification or enrolment
(:mod:`storefront.biometric_audit`). ``bulk_decrypt``: a command decrypted every stored
template (``storefront identity rotate-transform``, ``identity retired``; one entry per
run, subject ``palm_templates``, counts in the details). The staffed checkout's money:
``tender`` (a tender taken, whatever its outcome: approved, declined or pending),
``tender_settled`` (a pending card tender decided later: captured or failed, by
reconciliation or by a cashier's resend), ``hold_released`` (reconciliation voided a
hold that reached the processor after its tender was recorded failed), ``tender_voided``
(staff voided a tender of an open sale: its cash paid back or its card refunded; or
reconciliation found the refund of a void left unfinished) and ``tender_void_undone``
(reconciliation put a card tender left ``voiding`` back to paid: the processor has no
record of its refund); see :mod:`storefront.till`.
``staff_changed``: a staff account was disabled, enabled, given a new password, TOTP secret
or role (:mod:`storefront.security.staff_admin`; never the secret itself).
``payment_abandoned``: reconciliation closed a shopper payment left ``new`` by a process
killed before any processor call was journaled for it (no money moved;
:mod:`storefront.payments.orphans`)."""
_ATTEMPTS: Final = 20
_BACKOFF_S: Final = 0.002
"""Upper bound of the random pause before retry n (seconds, times n)."""


def entry_hash(*, seq: int, at: datetime, actor: str, action: str, subject: str,
               details: str, prev: str) -> str:
    """The SHA-256 hex digest of one entry; ``details`` is its canonical JSON text."""
    signed = canonical_json({"action": action, "actor": actor,
                             "at": at.isoformat(timespec="microseconds"),
                             "details": json.loads(details), "prev": prev, "seq": seq,
                             "subject": subject})
    return hashlib.sha256(_LABEL + signed).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry as read back (``details`` decoded)."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class NewEntry:
    """An entry to append with :meth:`Audit.record_many` (fields as in :meth:`Audit.record`)."""

    actor: str
    action: str
    subject: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a chain check: ``ok``; ``checked`` entries; the first bad ``seq``
    (None when ok) with the ``reason``; the head ``(seq, hash)`` to anchor elsewhere."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    head_seq: int
    head_hash: str


class Audit:
    """Appends to and verifies the audit chain."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._db = sessions
        self._clock = clock

    def record(self, *, actor: str, action: str, subject: str,
               details: dict[str, Any] | None = None) -> AuditRecord:
        """Append one entry; returns it. Never put secrets or templates in ``details``.

        Raises InvalidInput for an unknown action, empty actor/subject or details that
        are not JSON; Conflict if the chain stays contended after many retries.
        """
        return self.record_many([NewEntry(actor, action, subject, details)])[0]

    def record_many(self, entries: Sequence[NewEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order, in one transaction (all or none); returns them.

        Every entry is checked first (errors as in :meth:`record`), so a bad one appends
        nothing. Raises Conflict if the chain stays contended after many retries.
        """
        rows = [_checked(e) for e in entries]
        if not rows:
            return []
        for attempt in range(_ATTEMPTS):
            try:
                return self._append(rows)
            except IntegrityError:
                time.sleep(random.uniform(0, _BACKOFF_S * (attempt + 1)))
        raise Conflict("the audit log stayed contended; retry")

    def record_in(self, db: Session, entries: Sequence[NewEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order inside the caller's open write transaction ``db``:
        they commit with it, or roll back with it (all or none); returns them.

        Call it last, just before the caller commits: from here until that commit the
        caller holds the writers' lock of the audit log (see the module docstring). Every
        entry is checked first (errors as in :meth:`record`), so a bad one appends
        nothing and leaves ``db`` as it was. A writer that lost the race for the very
        first entry retries from a savepoint (the caller's work stays); Conflict if the
        chain stays contended after many retries. Database errors are raised as they
        come, the transaction is then the caller's to roll back.
        """
        rows = [_checked(e) for e in entries]
        if not rows:
            return []
        _lock_writers(db)  # before the savepoint: it opens the transaction on SQLite
        for attempt in range(_ATTEMPTS):
            try:
                with db.begin_nested():
                    return self._append_rows(db, rows)
            except IntegrityError:
                time.sleep(random.uniform(0, _BACKOFF_S * (attempt + 1)))
        raise Conflict("the audit log stayed contended; retry")

    def _append(self, rows: Sequence[tuple[str, str, str, str]]) -> list[AuditRecord]:
        with self._db.begin() as db:
            _lock_writers(db)
            return self._append_rows(db, rows)

    def _append_rows(self, db: Session,
                     rows: Sequence[tuple[str, str, str, str]]) -> list[AuditRecord]:
        """Append checked ``rows`` after the last entry, under the writers' lock."""
        out: list[AuditRecord] = []
        head = db.get(AuditHead, 1, with_for_update=True, populate_existing=True)
        last = db.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq.desc())
                          .limit(1)).first()
        seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
        at = self._clock().astimezone(UTC)
        for actor, action, subject, details in rows:
            seq += 1
            digest = entry_hash(seq=seq, at=at, actor=actor, action=action,
                                subject=subject, details=details, prev=prev)
            db.add(AuditEntry(seq=seq, at=at, actor=actor, action=action, subject=subject,
                              details=details, prev_hash=prev, hash=digest))
            out.append(AuditRecord(seq, at, actor, action, subject, json.loads(details),
                                   prev, digest))
            prev = digest
        db.flush()
        if head is None:
            db.add(AuditHead(id=1, seq=seq, hash=prev))
        else:
            head.seq, head.hash = seq, prev
        db.flush()
        return out

    def entries(self, *, after_seq: int = 0, limit: int = 100,
                subject: str | None = None) -> list[AuditRecord]:
        """Entries with ``seq > after_seq``, oldest first (of ``subject`` when given)."""
        query = sa.select(AuditEntry).where(AuditEntry.seq > after_seq)
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        with self._db() as db:
            rows = db.scalars(query.order_by(AuditEntry.seq).limit(limit)).all()
            return [AuditRecord(r.seq, r.at, r.actor, r.action, r.subject, json.loads(r.details),
                                r.prev_hash, r.hash) for r in rows]

    def verify(self, *, batch: int = 5000) -> VerifyReport:
        """Walk the whole chain; report the first entry that was edited, removed or moved."""
        expected_seq, prev, checked = 1, GENESIS, 0
        with self._db() as db:
            head = db.get(AuditHead, 1)
            while True:
                rows = db.scalars(sa.select(AuditEntry).where(AuditEntry.seq >= expected_seq)
                                  .order_by(AuditEntry.seq).limit(batch)).all()
                for row in rows:
                    problem = _check(row, expected_seq, prev)
                    if problem:
                        return VerifyReport(False, checked, expected_seq, problem,
                                            head.seq if head else 0,
                                            head.hash if head else GENESIS)
                    expected_seq, prev, checked = expected_seq + 1, row.hash, checked + 1
                if len(rows) < batch:
                    break
        return _head_report(head, checked, prev)


def _lock_writers(db: Session) -> None:
    """Take the audit writers' lock in ``db``'s transaction before the last entry is
    read: on SQLite a no-op UPDATE of the head row opens the write transaction (the
    database's write lock); on PostgreSQL the head row is read FOR UPDATE next."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(sa.update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))


def _checked(entry: NewEntry) -> tuple[str, str, str, str]:
    """``(actor, action, subject, canonical JSON details)`` of a valid entry (actor and
    subject cut to 100 characters). Raises InvalidInput as :meth:`Audit.record`."""
    if entry.action not in ACTIONS:
        raise InvalidInput(f"audit action {entry.action!r} is not one of {sorted(ACTIONS)}")
    if not entry.actor or not entry.subject:
        raise InvalidInput("audit entries need an actor and a subject")
    try:
        text = canonical_json(entry.details or {}).decode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"audit details are not JSON: {exc}") from None
    return entry.actor[:100], entry.action, entry.subject[:100], text


def _check(row: AuditEntry, seq: int, prev: str) -> str:
    """Why ``row`` cannot be entry ``seq`` after hash ``prev`` ('' when it can)."""
    if row.seq != seq:
        return f"entry {seq} is missing (next entry is {row.seq})"
    if row.prev_hash != prev:
        return f"entry {seq} does not link to entry {seq - 1} (removed, reordered or edited)"
    try:
        digest = entry_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                            subject=row.subject, details=row.details, prev=row.prev_hash)
    except (TypeError, ValueError):
        return f"entry {seq} has details that are not JSON (edited)"
    if digest != row.hash:
        return f"entry {seq} does not match its hash (edited)"
    return ""


def _head_report(head: AuditHead | None, checked: int, last_hash: str) -> VerifyReport:
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if (head_seq, head_hash) != (checked, last_hash):
        bad = min(head_seq, checked) + 1
        return VerifyReport(False, checked, bad,
                            f"the chain ends at entry {checked} but the head records entry "
                            f"{head_seq}: newest entries removed or the head edited",
                            head_seq, head_hash)
    return VerifyReport(True, checked, None, "chain intact", head_seq, head_hash)
