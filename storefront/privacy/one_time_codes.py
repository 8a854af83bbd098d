"""Short-lived, single-use codes a signed-in shopper shows to a gate or to staff.

Shared by the app entry codes (:mod:`storefront.privacy.entry_codes`, purpose ``entry``)
and the enrolment codes (:mod:`storefront.privacy.enrolment_codes`, purpose
``enrolment``). A code is 10 characters of the Crockford base32 alphabet (50 random bits
from ``secrets``), stored only as its SHA-256 in ``entry_codes`` with its purpose; using
one marks it used in one conditional UPDATE that also matches the purpose, so a code is
accepted once and only for the purpose it was made for.

A shopper holds at most :data:`MAX_LIVE` live (unused, unexpired) codes of one purpose
(:func:`issue_wait`: the services then refuse with 429 until the oldest expires). Used and
expired rows are deleted by the retention sweep once :data:`PURGE_GRACE` old
(:func:`purge_spent`): such a row names the shopper and its use to the second, which would
link a trip detached from the shopper (times cut to the day) back to them.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storefront.clock import as_utc
from storefront.db.models import EntryCode
from storefront.security.errors import PermissionDenied
from storefront.templates_repo import lock_shopper

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32 (no I, L, O, U)
LENGTH = 10
ENTRY = "entry"
ENROLMENT = "enrolment"
MAX_LIVE = 5  # live codes of one purpose per shopper
PURGE_GRACE = timedelta(days=1)  # used or expired rows are kept this long, then deleted


class EnrolmentCodeRefused(PermissionDenied):
    """Missing, unknown, expired or used enrolment code, or one of another shopper (403)."""

    code = "enrolment_code_refused"


def refused_reason() -> str:
    """The reason of every refusal (one text: it does not tell which check failed)."""
    return ("enrolment code missing, unknown, expired, already used or made for another "
            "shopper; nothing was stored. The shopper creates one, signed in, under Palms in "
            "the portal or with POST /me/enrolment-codes; a shopper registered at the store "
            "without a sign-in account must sign up first")


@dataclass(frozen=True)
class IssuedCode:
    """A code to show once; ``expires_at`` tz-aware UTC."""

    code: str
    expires_at: datetime


def digest(code: str) -> str:
    """SHA-256 hex of the code as typed (case, dashes and spaces ignored)."""
    normal = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


def issue_code(db: Session, *, shopper_id: str, purpose: str, now: datetime,
               ttl: timedelta) -> IssuedCode:
    """Add a fresh code of ``purpose`` for ``shopper_id`` to ``db``'s transaction, valid
    ``ttl`` from ``now``; only its digest is stored."""
    code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    db.add(EntryCode(code_hash=digest(code), shopper_id=shopper_id, issued_at=now,
                     expires_at=now + ttl, purpose=purpose))
    return IssuedCode(code, now + ttl)


def issue_wait(db: Session, *, shopper_id: str, purpose: str, now: datetime,
               limit: int = MAX_LIVE) -> int | None:
    """None when ``shopper_id`` may get another code of ``purpose`` now, else the seconds
    until their oldest live code expires (they hold ``limit`` unused, unexpired ones).
    Locks the shopper's row for ``db``'s transaction first, so concurrent requests of one
    shopper are counted one after the other."""
    lock_shopper(db, shopper_id)
    live = db.scalars(sa.select(EntryCode.expires_at).where(
        EntryCode.shopper_id == shopper_id, EntryCode.purpose == purpose,
        EntryCode.used_at.is_(None), EntryCode.expires_at > now)
        .order_by(EntryCode.expires_at)).all()
    if len(live) < limit:
        return None
    return max(1, math.ceil((as_utc(live[0]) - now).total_seconds()))


def purge_spent(db: Session, now: datetime, grace: timedelta = PURGE_GRACE) -> int:
    """Delete the codes (every purpose) used, or expired, more than ``grace`` before
    ``now``; returns how many rows went."""
    cutoff = now - grace
    done = db.execute(sa.delete(EntryCode).where(sa.or_(
        EntryCode.used_at <= cutoff,
        sa.and_(EntryCode.used_at.is_(None), EntryCode.expires_at <= cutoff))))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def _usable(code: str, purpose: str, now: datetime,
            shopper_id: str | None) -> list[sa.ColumnElement[bool]]:
    where = [EntryCode.code_hash == digest(code), EntryCode.purpose == purpose,
             EntryCode.used_at.is_(None), EntryCode.expires_at > now]
    if shopper_id is not None:
        where.append(EntryCode.shopper_id == shopper_id)
    return where


def is_usable(db: Session, code: str, *, purpose: str, now: datetime,
              shopper_id: str | None = None) -> bool:
    """True when ``code`` is an unused, unexpired code of ``purpose`` (and, when given,
    of ``shopper_id``); nothing is changed."""
    return db.scalar(sa.select(EntryCode.code_hash)
                     .where(*_usable(code, purpose, now, shopper_id))) is not None


def use_code(db: Session, code: str, *, purpose: str, now: datetime,
             shopper_id: str | None = None) -> str | None:
    """Mark ``code`` used in ``db``'s transaction when it is an unused, unexpired code of
    ``purpose`` (and, when given, of ``shopper_id``); returns its shopper id, else None.
    One conditional UPDATE: of two concurrent uses, one wins."""
    used = db.execute(sa.update(EntryCode).where(*_usable(code, purpose, now, shopper_id))
                      .values(used_at=now))
    if not used.rowcount:  # type: ignore[attr-defined]
        return None
    return db.scalar(sa.select(EntryCode.shopper_id).where(EntryCode.code_hash == digest(code)))
