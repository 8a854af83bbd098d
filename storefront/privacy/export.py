"""Data export: a zip archive (``data.json`` plus one CSV per table) of everything held
about a shopper (GDPR Art. 15 right of access, Art. 20 portability).

Tables reach the shopper directly (a shopper id column) or through their trips,
payments, receipts and disputes; ``EXPORTED`` says how for each, ``AUDIT_SUBJECTS``
which audit entries are about them (``shopper:<id>`` and ``session:``, ``receipt:``,
... of their records, plus what they did themselves), ``HIDDEN_COLUMNS`` what is never
put in an archive (secrets and the palm template itself) and ``EXCLUDED`` why a table
linked to the shopper is left out. A schema-walk test follows the linking columns from
the shopper and fails when a linked table is in neither. Small exports are built at
once; larger ones by a background thread (``privacy_exports`` is the job table),
downloadable once ``ready`` until they expire or the palm data they hold is deleted;
stored archives are encrypted, each under a key of its own
(:mod:`storefront.privacy.archives`).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

import storefront.devices.models  # noqa: F401  (device tables live on the same Base)
from cart.sql_event_store import cart_events
from storefront.clock import Clock
from storefront.db.models import (
    Base,
    BiometricConsent,
    PalmTemplateChange,
    PrivacyExport,
    Shopper,
)
from storefront.errors import Conflict, Gone, NotFound
from storefront.privacy.archives import (
    EXPIRED,
    ArchiveKeys,
    ExportPolicy,
    check_limits,
    drop_for_shopper,
    expires_at,
    lock_shopper,
    purge_expired,
    seal,
    unseal,
)
from storefront.security.audit import Audit, NewEntry
from storefront.templates_repo import lock_shopper as lock_shopper_row

Ids = dict[str, list[str]]
Link = tuple[str, str]
"""A way a table reaches the shopper: (its column, key of the id list that column matches)."""
# How each exported table reaches the shopper: a row is exported when any link matches.
EXPORTED: dict[str, tuple[Link, ...]] = {
    "shoppers": (("id", "shopper"),),
    "shopper_accounts": (("shopper_id", "shopper"),),
    "shopper_auth_sessions": (("shopper_id", "shopper"),),
    "biometric_consents": (("shopper_id", "shopper"),),
    "privacy_choices": (("shopper_id", "shopper"),),
    "palm_enrolments": (("shopper_id", "shopper"),),
    "palm_templates": (("shopper_id", "shopper"),),
    "palm_template_changes": (("shopper_id", "shopper"),),
    "privacy_exports": (("shopper_id", "shopper"),),
    "entry_codes": (("shopper_id", "shopper"),),
    # entries about the shopper or any record of theirs (``<kind>:<id>``, AUDIT_SUBJECTS),
    # and whatever the shopper did themselves (e.g. a refund asked for in the portal)
    "audit_log": (("subject", "audit_subject"), ("actor", "audit_actor")),
    "shopping_sessions": (("shopper_id", "shopper"),),
    "payments": (("shopper_id", "shopper"), ("session_id", "sessions")),
    "receipts": (("shopper_id", "shopper"), ("session_id", "sessions")),
    "cart_events": (("session_id", "sessions"),),
    "cart_corrections": (("session_id", "sessions"),),
    "flag_resolutions": (("session_id", "sessions"),),
    "age_checks": (("session_id", "sessions"),),
    "staff_claims": (("session_id", "sessions"),),
    "staffed_frozen_carts": (("session_id", "sessions"),),
    "tenders": (("session_id", "sessions"),),
    "payment_operations": (("payment_id", "payments"),),
    "disputes": (("receipt_id", "receipts"),),
    "amended_receipts": (("original_receipt_id", "receipts"), ("dispute_id", "disputes")),
}
AUDIT_SUBJECTS: dict[str, str] = {"shopper": "shopper", "session": "sessions",
                                  "receipt": "receipts", "payment": "payments",
                                  "tender": "tenders", "dispute": "disputes"}
"""Audit subject kinds (``<kind>:<id>``) that can name the shopper or a record of theirs,
with the id list they are matched against."""
# Never exported: credentials (a copy would let anyone log in; the TOTP secret both in
# clear, rows from before sealing, and sealed) and the biometric template (useless to the
# shopper, dangerous if the archive leaks).
HIDDEN_COLUMNS: dict[str, frozenset[str]] = {
    "shopper_accounts": frozenset({"password_hash", "totp_secret", "totp_secret_sealed"}),
    "shopper_auth_sessions": frozenset({"token_hash"}),
    "palm_templates": frozenset({"ciphertext"}),
    "privacy_exports": frozenset({"archive"}),
    "entry_codes": frozenset({"code_hash"}),
}
# Tables holding a shopper id column that are deliberately not exported, with the reason.
EXCLUDED: dict[str, str] = {
    "subject_keys": "wrapped data key of the palm templates: key material, never handed out;"
                    " destroyed with the palm data",
}
DELETED_WHILE_BUILDING = ("palm data was deleted while the export was built; request a new "
                          "one")
_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
SYNC_ROW_LIMIT = 2000  # above this many rows the archive is built in the background


@dataclass(frozen=True)
class ExportStatus:
    """An export job: ``state`` pending, running, ready, failed or expired (archive
    deleted: ``error`` says why); ``size_bytes`` (stored, encrypted) and ``expires_at``
    when built."""

    id: str
    state: str
    requested_at: datetime
    finished_at: datetime | None
    size_bytes: int | None
    error: str | None
    expires_at: datetime | None = None


def _tables() -> dict[str, sa.Table]:
    tables = dict(Base.metadata.tables)
    tables["cart_events"] = cart_events
    return tables


def _select_ids(db: Session, column: sa.Column[Any], where: sa.ColumnElement[bool]) -> list[str]:
    return sorted({str(v) for v in db.scalars(sa.select(column).where(where))})


def _in(column: sa.Column[Any], values: list[str]) -> sa.ColumnElement[bool]:
    """``column IN values`` (false for none)."""
    return column.in_(values) if values else sa.false()


def _ids(db: Session, shopper_id: str) -> Ids:
    """The ids of everything linked to the shopper: their trips, the payments, receipts
    and tenders of those trips (and payments or receipts naming the shopper outside
    them), the disputes of those receipts, and the audit subjects and actor naming any
    of them (``shopper:<id>``, ``session:<id>``, ... as :data:`AUDIT_SUBJECTS`)."""
    t = _tables()
    sessions = _select_ids(db, t["shopping_sessions"].c.id,
                           t["shopping_sessions"].c.shopper_id == shopper_id)
    ids: Ids = {"shopper": [shopper_id], "sessions": sessions}
    for name, key in (("payments", "payments"), ("receipts", "receipts")):
        table = t[name]
        ids[key] = sorted({v for chunk in _chunks(sessions) or [[]] for v in _select_ids(
            db, table.c.id, sa.or_(table.c.shopper_id == shopper_id,
                                   _in(table.c.session_id, chunk)))})
    ids["tenders"] = [v for chunk in _chunks(sessions)
                      for v in _select_ids(db, t["tenders"].c.id, _in(t["tenders"].c.session_id,
                                                                       chunk))]
    ids["disputes"] = [v for chunk in _chunks(ids["receipts"])
                       for v in _select_ids(db, t["disputes"].c.id,
                                            _in(t["disputes"].c.receipt_id, chunk))]
    ids["audit_subject"] = [f"{kind}:{v}" for kind, key in AUDIT_SUBJECTS.items()
                            for v in ids[key]]
    ids["audit_actor"] = [f"shopper:{shopper_id}"]
    return ids


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i:i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def collect(db: Session, shopper_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row held about the shopper, by table (every table of :data:`EXPORTED`, in
    its primary-key order), hidden columns removed (JSON-ready)."""
    ids, tables, out = _ids(db, shopper_id), _tables(), {}
    for name, links in EXPORTED.items():
        table = tables[name]
        hidden = HIDDEN_COLUMNS.get(name, frozenset())
        columns = [c for c in table.c if c.name not in hidden]
        order = [c for c in table.primary_key.columns if c.name not in hidden] or columns[:1]
        rows: dict[str, dict[str, Any]] = {}
        for column, key in links:
            for chunk in _chunks(ids[key]):
                query = sa.select(*columns).where(table.c[column].in_(chunk)).order_by(*order)
                for row in db.execute(query).mappings():
                    values = {k: _jsonable(v) for k, v in row.items()}
                    rows.setdefault(json.dumps(values, sort_keys=True, default=str), values)
        out[name] = sorted(rows.values(), key=lambda r: tuple(r[c.name] for c in order))
    return out


def build_archive(data: dict[str, list[dict[str, Any]]], shopper_id: str) -> bytes:
    """The zip: ``data.json`` (all tables), ``<table>.csv`` per table, ``README.txt``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", f"Everything storefront holds about shopper {shopper_id}."
                         "\nOne CSV per table; data.json holds the same rows. Times are UTC."
                         "\nPalm templates are listed but their bytes are never exported.\n")
        archive.writestr("data.json", json.dumps({"shopper_id": shopper_id, "tables": data},
                                                 indent=2, sort_keys=True, default=str))
        for name, rows in data.items():
            text = io.StringIO()
            columns = sorted({k for row in rows for k in row})
            writer = csv.DictWriter(text, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v
                                 for k, v in row.items()})
            archive.writestr(f"{name}.csv", text.getvalue())
    return buffer.getvalue()


class ExportService:
    """Request, follow and download exports; large ones are built by a background thread.

    Stored archives are sealed (each under its own key, wrapped under the KEK) and expire
    (:mod:`storefront.privacy.archives`, ``policy``); :meth:`export_now` hands an archive
    to staff without storing it.
    """

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock, keys: ArchiveKeys,
                 policy: ExportPolicy | None = None, sync_row_limit: int = SYNC_ROW_LIMIT,
                 start_thread: Callable[[Callable[[], None]], None] | None = None,
                 audit: Audit | None = None) -> None:
        self._audit = audit
        self._sessions = sessions
        self._clock = clock
        self._keys = keys
        self.policy = policy or ExportPolicy()
        self._sync_row_limit = sync_row_limit
        self._start = start_thread or _daemon

    def request(self, shopper_id: str) -> ExportStatus:
        """Queue an export; built at once when small (state ``ready``), else ``pending``.

        Raises NotFound (no such shopper) or TooManyAttempts (asked too often, or too
        many live exports: see :class:`storefront.privacy.archives.ExportPolicy`).
        """
        job_id, now = f"exp_{uuid.uuid4().hex}", self._clock()
        with self._sessions.begin() as db:
            lock_shopper(db, shopper_id)
            purge_expired(db, now, self.policy.ttl, shopper_id)
            check_limits(db, shopper_id, now, self.policy)
            db.add(PrivacyExport(id=job_id, shopper_id=shopper_id, state="pending",
                                 requested_at=now))
            if self._audit is not None:
                db.flush()
                self._audit.record_in(db, [NewEntry(
                    f"shopper:{shopper_id}", "export", f"shopper:{shopper_id}",
                    {"export_id": job_id})])
        with self._sessions() as db:
            ids = _ids(db, shopper_id)
        if sum(len(v) for v in ids.values()) * 10 <= self._sync_row_limit:
            self.build(job_id)
        else:
            self._start(lambda: self.build(job_id))
        try:
            return self.status(shopper_id, job_id)
        except NotFound:  # the account was deleted meanwhile, the job with it
            raise NotFound(f"shopper {shopper_id!r} does not exist (the account was deleted "
                           "while the export was requested)") from None

    def export_now(self, shopper_id: str, *, actor: str,
                   note: dict[str, Any] | None = None) -> bytes:
        """The zip of everything held about ``shopper_id``, built now and never stored: a
        data-subject request handled by staff (``actor`` ``staff:<id>`` or ``cli``), audited
        as ``export`` (``note``: more details for the audit entry). Raises NotFound for an
        unknown shopper. Callers refuse shoppers with a login first
        (:mod:`storefront.privacy.staff_requests`)."""
        with self._sessions() as db:
            if db.get(Shopper, shopper_id) is None:
                raise NotFound(f"shopper {shopper_id!r} does not exist")
        with self._sessions() as db:
            archive = build_archive(collect(db, shopper_id), shopper_id)
        if self._audit is not None:  # recorded before anything is handed over
            self._audit.record(actor=actor, action="export", subject=f"shopper:{shopper_id}",
                               details={"delivered": "to staff, not stored",
                                        "bytes": len(archive), **(note or {})})
        return archive

    def build(self, job_id: str) -> None:
        """Build, seal and store the archive of a pending job (a failure is recorded on the
        job, not raised).

        The final write runs under the shopper's row lock
        (:func:`storefront.templates_repo.lock_shopper`, taken by every palm deletion,
        consent withdrawal and account deletion) and stores the archive only when the job
        is still ``running`` (those deletions end it: :func:`end_for_shopper`) and no palm
        data was removed and no consent withdrawn since the data was collected
        (:func:`_deletion_mark`); otherwise nothing is stored (state ``failed``,
        :data:`DELETED_WHILE_BUILDING`). A job of an account deleted meanwhile stores nothing.
        """
        with self._sessions.begin() as db:
            started = db.execute(sa.update(PrivacyExport).where(
                PrivacyExport.id == job_id, PrivacyExport.state == "pending")
                .values(state="running"))
            if not started.rowcount:  # type: ignore[attr-defined]
                return  # gone (account deleted), ended, or built by another call
            shopper_id = db.scalar(sa.select(PrivacyExport.shopper_id)
                                   .where(PrivacyExport.id == job_id))
            mark = _deletion_mark(db, str(shopper_id))
        values = self._sealed(job_id, str(shopper_id))
        with self._sessions.begin() as db:
            if not lock_shopper_row(db, str(shopper_id)):
                return  # the account was deleted meanwhile (its export rows with it)
            if values["state"] == "ready" and _deletion_mark(db, str(shopper_id)) != mark:
                values = {"state": "failed", "error": DELETED_WHILE_BUILDING,
                          "finished_at": self._clock()}
            db.execute(sa.update(PrivacyExport).where(PrivacyExport.id == job_id,
                                                      PrivacyExport.state == "running")
                       .values(**values))

    def _sealed(self, job_id: str, shopper_id: str) -> dict[str, Any]:
        """The final column values of the job: the sealed archive (state ``ready``), or the
        error (state ``failed``)."""
        try:
            with self._sessions() as db:
                archive = build_archive(collect(db, shopper_id), shopper_id)
            sealed = seal(self._keys, shopper_id=shopper_id, job_id=job_id, archive=archive)
            now = self._clock()
            return {"state": "ready", "archive": sealed, "finished_at": now,
                    "expires_at": now + self.policy.ttl}
        except Exception as exc:  # noqa: BLE001 - recorded on the job for the shopper to see
            return {"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:300],
                    "finished_at": self._clock()}

    def status(self, shopper_id: str, job_id: str) -> ExportStatus:
        """The job's status; NotFound for another shopper's job."""
        with self._sessions() as db:
            job = _own(db, shopper_id, job_id)
            return ExportStatus(job.id, job.state, job.requested_at, job.finished_at,
                                len(job.archive) if job.archive else None, job.error,
                                expires_at(job, self.policy.ttl))

    def download(self, shopper_id: str, job_id: str) -> bytes:
        """The zip bytes; NotFound for another's job, Conflict while not ready, Gone (410)
        once deleted (expired, or the palm data it held deleted since: ``error`` says why)
        or unreadable (the KEK that sealed it was rotated away)."""
        now = self._clock()
        with self._sessions.begin() as db:
            purge_expired(db, now, self.policy.ttl, shopper_id)
            job = _own(db, shopper_id, job_id)
            state, blob, error = job.state, job.archive, job.error
        if state == EXPIRED:
            raise Gone(f"export {job_id} was deleted ({error}); request a new export")
        if state != "ready" or blob is None:
            raise Conflict(f"export {job_id} is {state}, not ready")
        return unseal(self._keys, shopper_id=shopper_id, job_id=job_id, blob=blob)

    def purge_expired(self) -> int:
        """Delete every expired archive now; returns how many (run by the retention sweep)."""
        with self._sessions.begin() as db:
            return purge_expired(db, self._clock(), self.policy.ttl)

    def drop_archives(self, shopper_id: str, *, before: datetime) -> int:
        """Delete the shopper's archives requested at or before ``before`` (the retention
        sweep removed data they hold); returns how many."""
        with self._sessions.begin() as db:
            return drop_for_shopper(db, shopper_id, before)


def _deletion_mark(db: Session, shopper_id: str) -> tuple[int, int]:
    """What changes when the shopper's palm data is deleted or their palm consent
    withdrawn: (newest ``removed`` change-log position of the shopper, withdrawn consents)."""
    removed = db.scalar(sa.select(sa.func.max(PalmTemplateChange.seq)).where(
        PalmTemplateChange.shopper_id == shopper_id, PalmTemplateChange.kind == "removed"))
    withdrawn = db.scalar(sa.select(sa.func.count()).select_from(BiometricConsent).where(
        BiometricConsent.shopper_id == shopper_id, BiometricConsent.withdrawn_at.is_not(None)))
    return int(removed or 0), int(withdrawn or 0)


def _own(db: Session, shopper_id: str, job_id: str) -> PrivacyExport:
    job = db.get(PrivacyExport, job_id)
    if job is None or job.shopper_id != shopper_id:
        raise NotFound(f"export {job_id!r} does not exist")
    return job


def _daemon(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="privacy-export", daemon=True).start()
