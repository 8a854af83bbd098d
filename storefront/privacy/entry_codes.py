"""App entry codes: shoppers without a palm (or who prefer not to use it) enter with a
short-lived, single-use code shown in the app (e.g. as a QR code) and read by a gate.

A code is 10 characters of the Crockford base32 alphabet (50 random bits from
``secrets``), valid ``ttl`` (default 2 minutes), stored only as its SHA-256. A
redemption marks it used in one conditional UPDATE, so two gates cannot both
accept it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import EntryCode
from storefront.errors import EntryRefused
from storefront.gates import OTHER_WAY, GateService

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32 (no I, L, O, U)
LENGTH = 10


@dataclass(frozen=True)
class IssuedCode:
    """A code to show once; ``expires_at`` tz-aware UTC."""

    code: str
    expires_at: datetime


def _digest(code: str) -> str:
    normal = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


class EntryCodeService:
    """Issue codes to signed-in shoppers; redeem them at a gate."""

    def __init__(self, *, sessions: sessionmaker[Session], gates: GateService, clock: Clock,
                 ttl: timedelta = timedelta(minutes=2)) -> None:
        self._sessions = sessions
        self._gates = gates
        self._clock = clock
        self._ttl = ttl

    def issue(self, shopper_id: str) -> IssuedCode:
        """A fresh code for ``shopper_id``."""
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        now = self._clock()
        with self._sessions.begin() as db:
            db.add(EntryCode(code_hash=_digest(code), shopper_id=shopper_id, issued_at=now,
                             expires_at=now + self._ttl))
        return IssuedCode(code, now + self._ttl)

    def redeem(self, code: str) -> tuple[str, str]:
        """Use the code once and open a session; returns ``(session_id, shopper_id)``.

        Raises EntryRefused for an unknown, used or expired code, or when the
        shopper may not enter (unpaid balance, declined hold).
        """
        now, digest = self._clock(), _digest(code)
        with self._sessions.begin() as db:
            used = db.execute(sa.update(EntryCode).where(
                EntryCode.code_hash == digest, EntryCode.used_at.is_(None),
                EntryCode.expires_at > now).values(used_at=now))
            shopper_id = db.scalar(sa.select(EntryCode.shopper_id)
                                   .where(EntryCode.code_hash == digest))
        if not used.rowcount or shopper_id is None:  # type: ignore[attr-defined]
            raise EntryRefused(f"entry code unknown, already used or expired; {OTHER_WAY}")
        return self._gates.open_session(shopper_id=shopper_id, entry_method="app"), shopper_id
