"""Data export: a zip archive (``data.json`` plus one CSV per table) of everything held
about a shopper (GDPR Art. 15 right of access, Art. 20 portability).

Tables reach the shopper directly (a shopper id column) or through their trips,
payments and receipts; ``EXPORTED`` says how for each, ``HIDDEN_COLUMNS`` what is
never put in an archive (secrets and the palm template itself) and
``EXCLUDED`` why a table holding a shopper id is left out. A schema-walk test
fails when a table with a shopper id column is in neither. Small exports are
built at once; larger ones by a background thread (``privacy_exports`` is the
job table), downloadable once ``ready``.
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
from storefront.db.models import Base, PrivacyExport
from storefront.errors import Conflict, NotFound
from storefront.security.audit import Audit

Ids = dict[str, list[str]]
# How each exported table reaches the shopper: (column, key of the id list it matches).
EXPORTED: dict[str, tuple[str, str]] = {
    "shoppers": ("id", "shopper"),
    "shopper_accounts": ("shopper_id", "shopper"),
    "shopper_auth_sessions": ("shopper_id", "shopper"),
    "biometric_consents": ("shopper_id", "shopper"),
    "privacy_choices": ("shopper_id", "shopper"),
    "palm_enrolments": ("shopper_id", "shopper"),
    "palm_templates": ("shopper_id", "shopper"),
    "palm_template_changes": ("shopper_id", "shopper"),
    "privacy_exports": ("shopper_id", "shopper"),
    "entry_codes": ("shopper_id", "shopper"),
    "audit_log": ("subject", "audit_subject"),  # biometric operations on the shopper
    "shopping_sessions": ("shopper_id", "shopper"),
    "payments": ("shopper_id", "shopper"),
    "receipts": ("shopper_id", "shopper"),
    "cart_events": ("session_id", "sessions"),
    "cart_corrections": ("session_id", "sessions"),
    "flag_resolutions": ("session_id", "sessions"),
    "age_checks": ("session_id", "sessions"),
    "staff_claims": ("session_id", "sessions"),
    "tenders": ("session_id", "sessions"),
    "payment_operations": ("payment_id", "payments"),
    "disputes": ("receipt_id", "receipts"),
    "amended_receipts": ("original_receipt_id", "receipts"),
}
# Never exported: credentials (a copy would let anyone log in) and the biometric
# template (useless to the shopper, dangerous if the archive leaks).
HIDDEN_COLUMNS: dict[str, frozenset[str]] = {
    "shopper_accounts": frozenset({"password_hash", "totp_secret"}),
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
SYNC_ROW_LIMIT = 2000  # above this many rows the archive is built in the background


@dataclass(frozen=True)
class ExportStatus:
    """An export job: ``state`` pending, running, ready or failed; ``size_bytes`` when ready."""

    id: str
    state: str
    requested_at: datetime
    finished_at: datetime | None
    size_bytes: int | None
    error: str | None


def _tables() -> dict[str, sa.Table]:
    tables = dict(Base.metadata.tables)
    tables["cart_events"] = cart_events
    return tables


def _ids(db: Session, shopper_id: str) -> Ids:
    t = _tables()
    sessions = [r for r in db.scalars(sa.select(t["shopping_sessions"].c.id)
                                      .where(t["shopping_sessions"].c.shopper_id == shopper_id))]
    payments = list(db.scalars(sa.select(t["payments"].c.id)
                               .where(t["payments"].c.shopper_id == shopper_id)))
    receipts = list(db.scalars(sa.select(t["receipts"].c.id)
                               .where(t["receipts"].c.shopper_id == shopper_id)))
    return {"shopper": [shopper_id], "audit_subject": [f"shopper:{shopper_id}"],
            "sessions": sessions, "payments": payments,
            "receipts": receipts}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def collect(db: Session, shopper_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row held about the shopper, by table, hidden columns removed (JSON-ready)."""
    ids, tables, out = _ids(db, shopper_id), _tables(), {}
    for name, (column, key) in EXPORTED.items():
        table = tables[name]
        hidden = HIDDEN_COLUMNS.get(name, frozenset())
        columns = [c for c in table.c if c.name not in hidden]
        rows = db.execute(sa.select(*columns).where(table.c[column].in_(ids[key]))).mappings()
        out[name] = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
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
    """Request, follow and download exports; large ones are built by a background thread."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock,
                 sync_row_limit: int = SYNC_ROW_LIMIT,
                 start_thread: Callable[[Callable[[], None]], None] | None = None,
                 audit: Audit | None = None) -> None:
        self._audit = audit
        self._sessions = sessions
        self._clock = clock
        self._sync_row_limit = sync_row_limit
        self._start = start_thread or _daemon

    def request(self, shopper_id: str) -> ExportStatus:
        """Queue an export; built at once when small (state ``ready``), else ``pending``."""
        job_id = f"exp_{uuid.uuid4().hex}"
        if self._audit is not None:
            self._audit.record(actor=f"shopper:{shopper_id}", action="export",
                               subject=f"shopper:{shopper_id}", details={"export_id": job_id})
        with self._sessions.begin() as db:
            db.add(PrivacyExport(id=job_id, shopper_id=shopper_id, state="pending",
                                 requested_at=self._clock()))
        with self._sessions() as db:
            ids = _ids(db, shopper_id)
        if sum(len(v) for v in ids.values()) * 10 <= self._sync_row_limit:
            self.build(job_id)
        else:
            self._start(lambda: self.build(job_id))
        return self.status(shopper_id, job_id)

    def build(self, job_id: str) -> None:
        """Build the archive of a pending job (a failure is recorded on the job, not raised)."""
        with self._sessions.begin() as db:
            job = db.get(PrivacyExport, job_id)
            if job is None or job.state not in ("pending",):
                return
            job.state = "running"
            shopper_id = job.shopper_id
        try:
            with self._sessions() as db:
                archive = build_archive(collect(db, shopper_id), shopper_id)
            values: dict[str, Any] = {"state": "ready", "archive": archive}
        except Exception as exc:  # noqa: BLE001 - recorded on the job for the shopper to see
            values = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
        with self._sessions.begin() as db:
            db.execute(sa.update(PrivacyExport).where(PrivacyExport.id == job_id)
                       .values(finished_at=self._clock(), **values))

    def status(self, shopper_id: str, job_id: str) -> ExportStatus:
        """The job's status; NotFound for another shopper's job."""
        with self._sessions() as db:
            job = _own(db, shopper_id, job_id)
            return ExportStatus(job.id, job.state, job.requested_at, job.finished_at,
                                len(job.archive) if job.archive else None, job.error)

    def download(self, shopper_id: str, job_id: str) -> bytes:
        """The zip bytes; NotFound for another's job, Conflict while not ready."""
        with self._sessions() as db:
            job = _own(db, shopper_id, job_id)
            if job.state != "ready" or job.archive is None:
                raise Conflict(f"export {job_id} is {job.state}, not ready")
            return job.archive


def _own(db: Session, shopper_id: str, job_id: str) -> PrivacyExport:
    job = db.get(PrivacyExport, job_id)
    if job is None or job.shopper_id != shopper_id:
        raise NotFound(f"export {job_id!r} does not exist")
    return job


def _daemon(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="privacy-export", daemon=True).start()
