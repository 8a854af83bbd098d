"""Shopper accounts: sign-up, login, expiring session tokens, optional TOTP second factor.

Passwords are hashed with argon2id (RFC 9106) through ``argon2-cffi`` and its
default parameters. Session tokens are 256-bit random opaque strings
(``secrets.token_urlsafe``) stored only as their SHA-256 hex digest, so a
database reader cannot log in. The second factor is TOTP (RFC 6238) via
``pyotp``, one 30-second step of clock drift accepted either way.

Login is rate-limited per account and per client IP (failed attempts in a
sliding window, in process memory: each API worker counts its own). It is
timing-safe: an unknown account is checked against a dummy hash, so it costs
the same argon2 work as a wrong password and answers the same error.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.db.models import Shopper, ShopperAccount, ShopperAuthSession
from storefront.errors import Conflict, InvalidInput, StorefrontError
from storefront.shoppers import ShopperService

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD, MAX_PASSWORD = 10, 256


class AuthenticationFailed(StorefrontError):
    """Wrong credentials, a missing or wrong second factor, or a bad/expired token (HTTP 401)."""

    code = "authentication_failed"


class TooManyAttempts(StorefrontError):
    """Too many failed logins for this account or address; ``retry_after_s`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginPolicy:
    """Session lifetime and rate limits: at most ``per_account`` / ``per_ip`` failed logins
    within ``window_s`` seconds."""

    session_ttl: timedelta = timedelta(hours=12)
    per_account: int = 5
    per_ip: int = 20
    window_s: float = 900.0


@dataclass(frozen=True)
class IssuedToken:
    """A session token, shown once; ``expires_at`` tz-aware UTC."""

    token: str
    shopper_id: str
    expires_at: datetime


class FailureWindow:
    """Failed attempts per key in a sliding window (thread-safe, monotonic clock)."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def count(self, key: str) -> tuple[int, float]:
        """(failures in the window, seconds until the oldest one leaves it)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            wait = hits[0] + self._window - now if hits else 0.0
            return len(hits), wait

    def add(self, key: str) -> None:
        """Record one failure of ``key``."""
        with self._lock:
            self._hits[key].append(time.monotonic())

    def refuse_when_over(self, limits: dict[str, int], reason: str) -> None:
        """Raise TooManyAttempts(``reason``) when a key has ``limits[key]`` failures or more
        in the window (Retry-After: until its oldest failure leaves the window)."""
        for key, limit in limits.items():
            count, wait = self.count(key)
            if count >= limit:
                raise TooManyAttempts(reason, retry_after_s=max(1, int(wait) + 1))


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a session token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_email(email: str) -> str:
    """Trimmed, lower-cased e-mail address; raises InvalidInput when it is not one."""
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput("email must be an e-mail address (name@domain.tld, at most 254 chars)")
    return value


class AccountService:
    """Sign up, log in and out, check tokens, enrol and verify TOTP."""

    def __init__(self, *, sessions: sessionmaker[Session], shoppers: ShopperService,
                 clock: Clock, policy: LoginPolicy | None = None,
                 hasher: PasswordHasher | None = None) -> None:
        self._sessions = sessions
        self._shoppers = shoppers
        self._clock = clock
        self._policy = policy or LoginPolicy()
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._failures = FailureWindow(self._policy.window_s)

    def sign_up(self, *, email: str, password: str, display_name: str,
                payment_token: str) -> str:
        """Create a shopper with login credentials; returns the shopper id.

        Raises InvalidInput (bad e-mail, password length, name or token) or
        Conflict (e-mail already registered).
        """
        address = normalise_email(email)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        with self._sessions() as db:
            if db.scalar(sa.select(ShopperAccount.shopper_id)
                         .where(ShopperAccount.email == address)) is not None:
                raise Conflict("an account with this e-mail already exists")
        password_hash = self._hasher.hash(password)
        shopper = self._shoppers.register(display_name=display_name, payment_token=payment_token)
        try:
            with self._sessions.begin() as db:
                db.add(ShopperAccount(shopper_id=shopper.id, email=address,
                                      password_hash=password_hash, totp_enabled=False,
                                      created_at=self._clock()))
        except IntegrityError as exc:  # a concurrent sign-up took the address
            with self._sessions.begin() as db:
                db.execute(sa.delete(Shopper).where(Shopper.id == shopper.id))
            raise Conflict("an account with this e-mail already exists") from exc
        return shopper.id

    def login(self, *, email: str, password: str, client_ip: str,
              totp_code: str | None = None) -> IssuedToken:
        """Check the credentials (and TOTP when enabled) and issue a session token.

        Raises TooManyAttempts before any check when the account or address is
        over its limit, AuthenticationFailed (same reason for an unknown account
        and a wrong password) otherwise.
        """
        address = email.strip().lower()
        keys = (f"acct:{address}", f"ip:{client_ip}")
        self._refuse_when_limited(keys)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in address):
            return self._fail(keys, "wrong e-mail or password")  # no such address exists
        with self._sessions() as db:
            account = db.scalar(sa.select(ShopperAccount).where(ShopperAccount.email == address))
        ok = self._verify(account.password_hash if account else self._dummy_hash, password)
        if account is None or not ok:
            return self._fail(keys, "wrong e-mail or password")
        if account.totp_enabled and not _totp_ok(account.totp_secret, totp_code):
            return self._fail(keys, "a valid TOTP code is required for this account")
        return self._issue(account.shopper_id)

    def _refuse_when_limited(self, keys: tuple[str, str]) -> None:
        self._failures.refuse_when_over(
            {keys[0]: self._policy.per_account, keys[1]: self._policy.per_ip},
            "too many failed logins; try again later")

    def _fail(self, keys: tuple[str, str], reason: str) -> IssuedToken:
        for key in keys:
            self._failures.add(key)
        raise AuthenticationFailed(reason)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def _issue(self, shopper_id: str) -> IssuedToken:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self._policy.session_ttl
        with self._sessions.begin() as db:
            db.add(ShopperAuthSession(token_hash=token_digest(token), shopper_id=shopper_id,
                                      created_at=now, expires_at=expires))
        return IssuedToken(token, shopper_id, expires)

    def authenticate(self, token: str) -> str:
        """The shopper id of a valid, unexpired token; raises AuthenticationFailed."""
        with self._sessions() as db:
            row = db.get(ShopperAuthSession, token_digest(token))
            if row is None or row.expires_at <= self._clock():
                raise AuthenticationFailed("missing, unknown or expired session token")
            return row.shopper_id

    def logout(self, token: str) -> None:
        """Revoke the token (idempotent)."""
        with self._sessions.begin() as db:
            db.execute(sa.delete(ShopperAuthSession)
                       .where(ShopperAuthSession.token_hash == token_digest(token)))

    def totp_enrol(self, shopper_id: str) -> str:
        """Start TOTP enrolment: a new secret (base32), active once verified; returns the
        ``otpauth://`` provisioning URI. Raises Conflict when TOTP is already on."""
        secret = pyotp.random_base32()
        with self._sessions.begin() as db:
            account = _account(db, shopper_id)
            if account.totp_enabled:
                raise Conflict("TOTP is already enabled for this account")
            account.totp_secret = secret
            email = account.email
        return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="storefront")

    def totp_verify(self, shopper_id: str, code: str) -> None:
        """Turn TOTP on after checking one code; raises Conflict (not enrolled) or
        AuthenticationFailed (wrong code)."""
        with self._sessions.begin() as db:
            account = _account(db, shopper_id)
            if account.totp_secret is None:
                raise Conflict("start TOTP enrolment first (POST /auth/totp/enrol)")
            if not _totp_ok(account.totp_secret, code):
                raise AuthenticationFailed("wrong TOTP code")
            account.totp_enabled = True

    def email_of(self, shopper_id: str) -> str | None:
        """The login e-mail of the shopper, None for a shopper without credentials."""
        with self._sessions() as db:
            row = db.get(ShopperAccount, shopper_id)
            return None if row is None else row.email


def _account(db: Session, shopper_id: str) -> ShopperAccount:
    account = db.get(ShopperAccount, shopper_id)
    if account is None:
        raise AuthenticationFailed("this shopper has no login credentials")
    return account


def _totp_ok(secret: str | None, code: str | None) -> bool:
    if secret is None or code is None or not re.fullmatch(r"\d{6}", code):
        return False
    return bool(pyotp.TOTP(secret).verify(code, valid_window=1))
