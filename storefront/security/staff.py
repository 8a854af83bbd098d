"""Staff accounts, roles, passwords, TOTP and expiring bearer tokens.

Roles (least privilege; see :data:`PERMISSIONS`):

* ``cashier``: staffed-checkout queue, claims, corrections up to a quantity limit,
  flags, age checks, tenders, close, X report, refunds up to a small limit;
* ``manager``: everything a cashier does without the correction limit, larger
  refunds, the till's Z report (closing a drawer);
* ``auditor``: reads and verifies the audit log, nothing else;
* ``admin``: catalogue changes and staff accounts, no checkout or money.

Passwords are hashed with argon2id (RFC 9106, ``argon2-cffi`` defaults); an unknown
staff id is checked against a dummy hash so that both failures take the same time.
TOTP (RFC 6238, 30 s steps, 6 digits, one step of drift allowed, ``pyotp``) is
required for managers and admins; each step's code signs in at most once per account
(the last accepted step is kept in ``staff_accounts.totp_last_step``, claimed in one
conditional UPDATE: :func:`storefront.accounts.claim_totp_step`); the secret is sealed
with AES-256-GCM under the template KEK (the current one of a
:class:`identity.keyring.KeyProvider`, so a running service follows ``storefront keys
rotate``; a secret no readable KEK opens is :class:`storefront.errors.KeyUnavailable`,
HTTP 503, not a credentials failure).
Tokens are 256-bit random strings; only their SHA-256 is stored. Every request's token
is checked against its account: a revoked or expired token, or one of a disabled
account, is refused. Disabling, enabling, password and TOTP resets and role changes are
:mod:`storefront.security.staff_admin`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal, get_args

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session, sessionmaker

from identity.keyring import ListingKeyProvider
from storefront.accounts import LoginPolicy, claim_totp_step, totp_step
from storefront.clock import Clock
from storefront.db.models import StaffAccount, StaffToken
from storefront.errors import Conflict, InvalidInput
from storefront.security.attempts import AttemptCounter
from storefront.security.attempts_sql import SqlFailureWindow
from storefront.security.errors import AuthenticationRequired
from storefront.security.sealing import SecretSealer

Role = Literal["cashier", "manager", "auditor", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
MFA_ROLES: Final = frozenset({"manager", "admin"})
Permission = Literal["checkout", "till_close", "refund", "audit_read", "catalogue_write",
                     "staff_admin", "shopper_read", "enrol"]
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "cashier": frozenset({"checkout", "refund", "shopper_read", "enrol"}),
    "manager": frozenset({"checkout", "till_close", "refund", "shopper_read", "enrol"}),
    "auditor": frozenset({"audit_read"}),
    "admin": frozenset({"catalogue_write", "staff_admin"}),
}
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
STAFF_TOTP_LABEL = b"storefront/staff-totp/v1\x00"
"""Associated-data label of sealed staff TOTP secrets (:mod:`storefront.security.sealing`)."""
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("storefront-dummy-password")
ATTEMPTS_NAMESPACE = "staff-login"
"""The namespace of the failed staff sign-ins in ``failed_attempts``."""


@dataclass(frozen=True)
class StaffPrincipal:
    """An authenticated staff member."""

    id: str
    role: str

    def can(self, permission: str) -> bool:
        """True when the role grants ``permission``."""
        return permission in PERMISSIONS.get(self.role, frozenset())


@dataclass(frozen=True)
class NewStaff:
    """A created account: the TOTP secret and its ``otpauth://`` URI are shown once."""

    id: str
    role: str
    totp_secret: str | None
    totp_uri: str | None


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token (shown once) and when it expires (UTC)."""

    token: str
    staff_id: str
    role: str
    expires_in_s: int


def token_hash(token: str) -> str:
    """SHA-256 hex of a bearer token (what is stored and looked up)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaffService:
    """Creates staff accounts, logs them in and authenticates their bearer tokens.

    ``kek``: one fixed KEK (32 bytes), or a KeyProvider whose current KEK seals new
    secrets; a secret is opened with the current KEK, else with the other KEKs the
    provider lists (the previous key file while a rotation re-seals the secrets) or this
    instance saw as current before. ``failures``: where failed sign-ins are counted
    (default: the database, namespace :data:`ATTEMPTS_NAMESPACE`, shared by every process).
    """

    def __init__(self, sessions: sessionmaker[Session], kek: bytes | ListingKeyProvider,
                 clock: Clock, *, token_ttl_s: int, issuer: str = "storefront",
                 limits: LoginPolicy | None = None,
                 failures: AttemptCounter | None = None) -> None:
        self._db = sessions
        self._sealer = SecretSealer(kek, label=STAFF_TOTP_LABEL, kind="staff")
        self._clock = clock
        self._ttl = timedelta(seconds=token_ttl_s)
        self._issuer = issuer
        self._limits = limits or LoginPolicy()
        self._failures = failures or SqlFailureWindow(
            sessions, window_s=self._limits.window_s, namespace=ATTEMPTS_NAMESPACE, clock=clock)

    def check_new(self, *, staff_id: str, role: str) -> None:
        """Check an account could be added before its password is asked for.

        Raises InvalidInput (bad id or role) and Conflict (the id is taken); :meth:`add`
        checks all of it again in its own transaction.
        """
        if not _ID.fullmatch(staff_id):
            raise InvalidInput("staff id must be 1-64 characters of [A-Za-z0-9._-]")
        check_role(role)
        with self._db() as db:
            if db.get(StaffAccount, staff_id) is not None:
                raise Conflict(f"staff id {staff_id!r} is taken")

    def add(self, *, staff_id: str, role: str, password: str) -> NewStaff:
        """Create an account; managers and admins get a TOTP secret (returned once).

        Raises InvalidInput (bad id, role, or a password under 12 characters) and
        Conflict (the id is taken).
        """
        if not _ID.fullmatch(staff_id):
            raise InvalidInput("staff id must be 1-64 characters of [A-Za-z0-9._-]")
        check_role(role)
        password_hash = hash_password(password)
        secret = pyotp.random_base32() if role in MFA_ROLES else None
        with self._db.begin() as db:
            if db.get(StaffAccount, staff_id) is not None:
                raise Conflict(f"staff id {staff_id!r} is taken")
            db.add(StaffAccount(id=staff_id, role=role, password_hash=password_hash,
                                totp_secret_sealed=self._seal(staff_id, secret)
                                if secret else None, created_at=self._clock()))
        return NewStaff(staff_id, role, secret, self.totp_uri(staff_id, secret))

    def new_totp_secret(self, staff_id: str) -> tuple[str, bytes]:
        """A new TOTP secret (base32, to show once) and its sealed form for ``staff_id``'s
        row. Raises KeyUnavailable when the current KEK cannot be read."""
        secret = pyotp.random_base32()
        return secret, self._seal(staff_id, secret)

    def totp_uri(self, staff_id: str, secret: str | None) -> str | None:
        """The ``otpauth://`` provisioning URI of ``secret`` (None without one)."""
        return pyotp.TOTP(secret).provisioning_uri(name=staff_id, issuer_name=self._issuer) \
            if secret else None

    def login(self, *, staff_id: str, password: str, totp: str | None = None,
              client_ip: str = "unknown") -> IssuedToken:
        """Check the password (and TOTP code for managers and admins); issue a token.

        Raises AuthenticationRequired with one message for every failure (unknown id,
        wrong password, missing, wrong or already used code, disabled account), each
        counted as a failure, and TooManyAttempts
        (before any check) once the staff id or the client address has had too many
        failures in the window (``storefront.accounts.LoginPolicy``: 5 per id, 20 per
        address, 15 minutes; counted in the database, across every process; each sign-in
        is counted before the password is checked and taken back unless it fails, so
        sign-ins in parallel get no more passwords checked than the limit).
        """
        keys = (f"staff:{staff_id}", f"ip:{client_ip}")
        with self._failures.reserve(
                {keys[0]: self._limits.per_account, keys[1]: self._limits.per_ip},
                "too many failed sign-ins; try again later") as attempt:
            with self._db() as db:
                row = db.get(StaffAccount, staff_id) if _ID.fullmatch(staff_id) else None
                stored = row.password_hash if row is not None else _DUMMY_HASH
                role, sealed = (row.role, row.totp_secret_sealed) if row else ("", None)
                disabled = row is None or row.disabled_at is not None
            password_ok = _verify_password(stored, password)
            # the secret is opened only for a right password of an enabled account, so a
            # server key problem (KeyUnavailable, 503) is never reported to a wrong guess
            step = totp_step(self._open(staff_id, sealed), totp) \
                if role in MFA_ROLES and sealed is not None and totp is not None \
                and password_ok and not disabled else None
            token = None if disabled or not password_ok or (role in MFA_ROLES and step is None) \
                else self._issue(staff_id, step)
            if token is None:
                attempt.count_as_failure()
                raise AuthenticationRequired("staff id, password or one-time code is not valid")
        return IssuedToken(token, staff_id, role, int(self._ttl.total_seconds()))

    def _issue(self, staff_id: str, step: int | None) -> str | None:
        """A new token of ``staff_id``, after claiming TOTP ``step`` (None: no code);
        None when the step was used already (a replayed or older code)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._db.begin() as db:
            if step is not None and not claim_totp_step(
                    db, StaffAccount, (StaffAccount.id, staff_id), step):
                return None
            db.execute(sa.delete(StaffToken).where(StaffToken.expires_at < now))
            db.add(StaffToken(token_hash=token_hash(token), staff_id=staff_id, issued_at=now,
                              expires_at=now + self._ttl))
        return token

    def authenticate(self, token: str) -> StaffPrincipal:
        """The staff member holding ``token``; raises AuthenticationRequired when it is
        unknown, expired, revoked, or the account is disabled."""
        now = self._clock()
        with self._db() as db:
            row = db.get(StaffToken, token_hash(token))
            account = db.get(StaffAccount, row.staff_id) if row is not None else None
            if row is None or account is None or row.revoked_at is not None \
                    or row.expires_at <= now or account.disabled_at is not None:
                raise AuthenticationRequired("the bearer token is not valid or has expired")
            return StaffPrincipal(account.id, account.role)

    def logout(self, token: str) -> None:
        """Revoke ``token`` (no effect when unknown)."""
        with self._db.begin() as db:
            db.execute(sa.update(StaffToken).where(StaffToken.token_hash == token_hash(token))
                       .values(revoked_at=self._clock()))

    def _seal(self, staff_id: str, secret: str) -> bytes:
        """``secret`` sealed for ``staff_id`` (:meth:`SecretSealer.seal`)."""
        return self._sealer.seal(staff_id, secret)

    def _open(self, staff_id: str, blob: bytes) -> str:
        """The TOTP secret sealed in ``blob``; raises KeyUnavailable when no KEK this
        process can read opens it (a server key problem, not the user's credentials)."""
        return self._sealer.open(staff_id, blob)


def check_role(role: str) -> None:
    """Raise InvalidInput unless ``role`` is one of :data:`ROLES`."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")


def hash_password(password: str) -> str:
    """The argon2id hash of a staff password; raises InvalidInput unless it is 12 to 1024
    characters."""
    if not 12 <= len(password) <= 1024:
        raise InvalidInput("passwords are 12 to 1024 characters")
    return _HASHER.hash(password)


def _verify_password(stored: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False
