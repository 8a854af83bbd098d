"""Stored data-export archives: encrypted at rest, expiring, limited per shopper.

An archive kept in ``privacy_exports.archive`` is sealed with AES-256-GCM (NIST SP
800-38D) under a random key of its own, made for that one archive and stored only wrapped
(AES-256-GCM) under the store's KEK inside the sealed blob. It is not the shopper's
template data key (``subject_keys``): an export never creates or needs one, so a shopper
without palms is never left holding a data key. Deleting the archive (expiry, the
retention sweep, any palm deletion, consent withdrawal, account deletion:
:func:`end_for_shopper`) deletes the only copy of its key with it; a copy in a database
backup can be opened only with the KEK that wrapped it, so not after the next KEK
rotation (as the template keys of a backup). The associated data binds a sealed archive
and its wrapped key to the export id, the shopper id and the KEK id.

Sealed format: ``b"SFX2"``, 1-byte KEK id length n, n bytes KEK id (UTF-8), 12-byte wrap
nonce, 48-byte wrapped key (key + tag), 12-byte nonce, ciphertext + 16-byte tag.

An archive expires :attr:`ExportPolicy.ttl` after it was built (``expires_at``); an
expired one is deleted (the row stays, state ``expired``, ``error`` saying why) when it
is asked for or by the retention sweep. A shopper may hold at most
:attr:`ExportPolicy.max_live` live exports (pending, running or ready) and ask at most
once per :attr:`ExportPolicy.min_interval`; beyond that the request is refused with
:class:`storefront.accounts.TooManyAttempts` (HTTP 429 with ``Retry-After``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from identity.errors import KeyFileError
from identity.keyring import KeyProvider
from storefront.accounts import TooManyAttempts
from storefront.clock import as_utc
from storefront.db.models import PrivacyExport, Shopper
from storefront.errors import Gone, NotFound

MAGIC: Final = b"SFX2"
_WRAP_LABEL: Final = b"storefront/privacy-export-key/v2\x00"
LIVE_STATES: Final = ("pending", "running", "ready")
EXPIRED: Final = "expired"
EXPIRED_REASON: Final = "archive deleted: it expired"
RETENTION_REASON: Final = ("archive deleted: the retention period removed data it held; "
                           "request a new export")
PALM_DATA_REASON: Final = ("archive deleted: the palm data it held was deleted; request a new "
                           "export")
CONSENT_REASON: Final = ("archive deleted: the palm consent was withdrawn and the palm data it "
                         "held deleted; request a new export")


class ArchiveKeys(Protocol):
    """Source of the KEK wrapping each archive's own key (``provider``; e.g. a
    :class:`storefront.subject_keys.StoreKeyring`, which follows KEK rotations)."""

    @property
    def provider(self) -> KeyProvider:
        """The store's KEKs: the current one wraps, older ones (during a rotation) unwrap."""
        ...


@dataclass(frozen=True)
class ExportPolicy:
    """How long a built archive is kept (``ttl``), how many live exports one shopper may
    hold (``max_live``) and how often they may ask (``min_interval``)."""

    ttl: timedelta = timedelta(days=7)
    max_live: int = 3
    min_interval: timedelta = timedelta(seconds=60)


def _aad(job_id: str, shopper_id: str, kek_id: bytes) -> bytes:
    return MAGIC + job_id.encode() + b"\x00" + shopper_id.encode() + b"\x00" + kek_id


def seal(keys: ArchiveKeys, *, shopper_id: str, job_id: str, archive: bytes) -> bytes:
    """The zip ``archive`` encrypted under a fresh key of its own, wrapped under the current
    KEK in the blob (format: see module). Raises what the KEK source raises."""
    kek_id, kek = keys.provider.current()
    kid = kek_id.encode()
    aad, key = _aad(job_id, shopper_id, kid), os.urandom(32)
    wrap_nonce, nonce = os.urandom(12), os.urandom(12)
    wrapped = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, key, _WRAP_LABEL + aad)
    return (MAGIC + bytes([len(kid)]) + kid + wrapped + nonce
            + AESGCM(key).encrypt(nonce, archive, aad))


def unseal(keys: ArchiveKeys, *, shopper_id: str, job_id: str, blob: bytes) -> bytes:
    """The zip bytes of a sealed archive. Raises Gone when it cannot be opened: the KEK
    that wrapped its key was rotated away, another format, or it does not authenticate."""
    size = blob[4] if len(blob) > 4 else 0
    kid, body = blob[5:5 + size], blob[5 + size:]
    if blob[:4] != MAGIC or len(body) < 12 + 48 + 12 + 16:
        raise Gone(f"export {job_id} can no longer be opened (stored in another format); "
                   "request a new export")
    aad = _aad(job_id, shopper_id, kid)
    try:
        kek = keys.provider.get(kid.decode("utf-8", "replace"))
        key = AESGCM(kek).decrypt(body[:12], body[12:60], _WRAP_LABEL + aad)
        return AESGCM(key).decrypt(body[60:72], body[72:], aad)
    except KeyFileError:
        raise Gone(f"export {job_id} can no longer be opened: the key-encryption key that "
                   "sealed it was rotated away; request a new export") from None
    except InvalidTag:
        raise Gone(f"export {job_id} can no longer be opened (it does not authenticate); "
                   "request a new export") from None


def expires_at(job: PrivacyExport, ttl: timedelta) -> datetime | None:
    """When the job's archive expires: ``expires_at``, else (rows built before the column
    existed) ``finished_at + ttl``; None while not built."""
    if job.expires_at is not None:
        return as_utc(job.expires_at)
    return None if job.finished_at is None else as_utc(job.finished_at) + ttl


def lock_shopper(db: Session, shopper_id: str) -> None:
    """Serialise export requests of one shopper (the shopper row is locked for the rest of
    ``db``'s transaction: a row lock on PostgreSQL, the write lock on SQLite). Raises
    NotFound for an unknown shopper."""
    done = db.execute(sa.update(Shopper).where(Shopper.id == shopper_id)
                      .values(display_name=Shopper.display_name))
    if not int(done.rowcount or 0):  # type: ignore[attr-defined]
        raise NotFound(f"shopper {shopper_id!r} does not exist")


def check_limits(db: Session, shopper_id: str, now: datetime, policy: ExportPolicy) -> None:
    """Raise TooManyAttempts (with the seconds to wait) when the shopper asked less than
    ``min_interval`` ago or holds ``max_live`` live exports; call after
    :func:`lock_shopper` and :func:`purge_expired`."""
    last = db.scalar(sa.select(sa.func.max(PrivacyExport.requested_at))
                     .where(PrivacyExport.shopper_id == shopper_id))
    if last is not None and as_utc(last) + policy.min_interval > now:
        wait = (as_utc(last) + policy.min_interval - now).total_seconds()
        raise TooManyAttempts(f"one data export per {_span(policy.min_interval)}; try again "
                              "shortly", retry_after_s=max(1, math.ceil(wait)))
    live = db.scalars(sa.select(PrivacyExport).where(
        PrivacyExport.shopper_id == shopper_id,
        PrivacyExport.state.in_(LIVE_STATES))).all()
    if len(live) >= policy.max_live:
        ends = [e for e in (expires_at(j, policy.ttl) for j in live) if e is not None]
        wait = (min(ends) - now).total_seconds() if ends else 60.0
        raise TooManyAttempts(f"at most {policy.max_live} data exports are kept at a time; "
                              "download one of them, or wait until the oldest expires",
                              retry_after_s=max(1, math.ceil(wait)))


def _span(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    return f"{seconds // 60} minute(s)" if seconds % 60 == 0 else f"{seconds} seconds"


def _drop(db: Session, where: sa.ColumnElement[bool], reason: str) -> int:
    done = db.execute(sa.update(PrivacyExport).where(
        PrivacyExport.state.in_(LIVE_STATES), where).values(
        state=EXPIRED, archive=None, error=reason))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def purge_expired(db: Session, now: datetime, ttl: timedelta,
                  shopper_id: str | None = None) -> int:
    """Delete every archive past its expiry (of ``shopper_id`` only, when given); returns
    how many. Pending and running jobs have no archive yet and are left alone."""
    due = sa.or_(PrivacyExport.expires_at <= now,
                 sa.and_(PrivacyExport.expires_at.is_(None),
                         PrivacyExport.finished_at <= now - ttl))
    where: Any = sa.and_(PrivacyExport.state == "ready", due)
    if shopper_id is not None:
        where = sa.and_(where, PrivacyExport.shopper_id == shopper_id)
    return _drop(db, where, EXPIRED_REASON)


def drop_for_shopper(db: Session, shopper_id: str, before: datetime,
                     reason: str = RETENTION_REASON) -> int:
    """Delete the archives of ``shopper_id`` requested at or before ``before`` (jobs still
    being built are ended too: their build stores nothing); returns how many."""
    return _drop(db, sa.and_(PrivacyExport.shopper_id == shopper_id,
                             PrivacyExport.requested_at <= before), reason)


def end_for_shopper(db: Session, shopper_id: str, reason: str) -> int:
    """Delete every stored archive of ``shopper_id`` and end their pending and running
    exports (their build stores nothing), with ``reason``, in ``db``'s transaction: run by
    every palm deletion and consent withdrawal under the shopper's row lock. Returns how
    many exports were ended."""
    return _drop(db, PrivacyExport.shopper_id == shopper_id, reason)
