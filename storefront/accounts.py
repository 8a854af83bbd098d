"""Shopper accounts: sign-up, login, expiring session tokens, optional TOTP second factor.

Passwords are hashed with argon2id (RFC 9106) through ``argon2-cffi`` and its
default parameters. Session tokens are 256-bit random opaque strings
(``secrets.token_urlsafe``) stored only as their SHA-256 hex digest, so a
database reader cannot log in. The second factor is TOTP (RFC 6238) via
``pyotp``, one 30-second step of clock drift accepted either way, each step at most once
per account: the last accepted step is kept (``totp_last_step``) and a code of that step or
an earlier one is refused, checked and stored in one conditional UPDATE so that two
logins racing with one code cannot both succeed (:func:`claim_totp_step`). Turning TOTP
on ends every other session of the shopper (the one making the request stays).

Login is rate-limited per account and per client IP (failed attempts in a
sliding window, counted in the database: every API worker counts the same failures and a
restart forgets none; :class:`storefront.security.attempts_sql.SqlFailureWindow`). Each
login is counted as a failure before the password is checked and taken back when it
succeeds (or fails for another reason than the credentials), so requests sent in
parallel to any number of workers get no more wrong passwords checked than the limit.
It is timing-safe: an unknown account is checked against a dummy hash, so it costs
the same argon2 work as a wrong password and answers the same error; for an account
with TOTP on, a wrong password and a right password with a missing, wrong or replayed
code answer the same error too, and both count as failures.

The TOTP secret is stored only sealed under the store's key-encryption key, as staff
secrets are (:mod:`storefront.shopper_totp`: AES-256-GCM, the shopper id bound as
associated data): a copy of the database does not give a shopper's codes. A row still
holding a clear secret from before is sealed on its first use (and at start-up); a sealed
value that does not open (altered) fails the login like a wrong code (401), logged.

Sign-up answers 409 for an e-mail that has an account (there is no e-mail service to send
a verification link through instead), so it is throttled like a login: the "address
taken" answers are counted per client address (``LoginPolicy.signup_per_ip`` in
``window_s``) and beyond that every sign-up from the address is refused (429). The
password is hashed before the address is looked up, so a taken and a free address cost
the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from identity.keyring import ListingKeyProvider
from storefront.clock import Clock
from storefront.db.models import Shopper, ShopperAccount, ShopperAuthSession
from storefront.errors import Conflict, InvalidInput, StorefrontError
from storefront.security.attempts import AttemptCounter, Reservation
from storefront.security.attempts import FailureWindow as FailureWindow
from storefront.security.attempts import TooManyAttempts as TooManyAttempts
from storefront.security.attempts_sql import SqlFailureWindow
from storefront.security.sealing import SealedSecretUnreadable
from storefront.shopper_totp import seal_clear_row, shopper_totp_sealer
from storefront.shoppers import ShopperService

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD, MAX_PASSWORD = 10, 256
BAD_LOGIN = "wrong e-mail, password or TOTP code"
"""The one answer to every failed shopper login (unknown e-mail, wrong password, missing,
wrong or replayed TOTP code), so it does not tell which part was wrong."""
TAKEN = "an account with this e-mail already exists"
ATTEMPTS_NAMESPACE = "shopper-accounts"
"""The namespace of the shopper login and sign-up failures in ``failed_attempts``."""


class AuthenticationFailed(StorefrontError):
    """Wrong credentials, a missing or wrong second factor, or a bad/expired token (HTTP 401)."""

    code = "authentication_failed"


@dataclass(frozen=True)
class LoginPolicy:
    """Session lifetime and rate limits: at most ``per_account`` / ``per_ip`` failed logins
    and ``signup_per_ip`` sign-ups answered "address taken" within ``window_s`` seconds."""

    session_ttl: timedelta = timedelta(hours=12)
    per_account: int = 5
    per_ip: int = 20
    window_s: float = 900.0
    signup_per_ip: int = 5


@dataclass(frozen=True)
class IssuedToken:
    """A session token, shown once; ``expires_at`` tz-aware UTC."""

    token: str
    shopper_id: str
    expires_at: datetime


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a session token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def totp_step(secret: str | None, code: str | None, at: float | None = None) -> int | None:
    """The 30-second step (RFC 6238 counter) whose code ``code`` is, among the step of
    ``at`` (Unix seconds, default now) and the steps either side; None when it is none of
    them, or the secret or code is missing or not 6 digits."""
    if secret is None or code is None or not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(time.time() if at is None else at)
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def claim_totp_step(db: Session, model: Any, key: Any, step: int) -> bool:
    """Record ``step`` as the last accepted TOTP step of the row of ``model`` whose
    primary key column ``key`` is given (``(column, value)``), when it is later than the
    stored one; True when recorded. One conditional UPDATE, so of two transactions
    claiming the same step exactly one gets True (the other waits for the row, then finds
    the step taken)."""
    column, value = key
    done = db.execute(sa.update(model).where(column == value).where(
        sa.or_(model.totp_last_step.is_(None), model.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0) == 1)


def normalise_email(email: str) -> str:
    """Trimmed, lower-cased e-mail address; raises InvalidInput when it is not one."""
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput("email must be an e-mail address (name@domain.tld, at most 254 chars)")
    return value


def _fail(attempt: Reservation, reason: str) -> IssuedToken:
    """Count ``attempt`` as a failed login and raise AuthenticationFailed(``reason``)."""
    attempt.count_as_failure()
    raise AuthenticationFailed(reason)


class AccountService:
    """Sign up, log in and out, check tokens, enrol and verify TOTP.

    ``keys``: the store's KEK (32 bytes) or key provider (the service's
    :class:`storefront.subject_keys.ReloadingKeyProvider`) sealing the TOTP secrets.
    ``failures``: where failed logins and "address taken" sign-ups are counted (default:
    the database, namespace :data:`ATTEMPTS_NAMESPACE`, shared by every process).
    Raises KeyUnavailable when its current KEK cannot be read.
    """

    def __init__(self, *, sessions: sessionmaker[Session], shoppers: ShopperService,
                 clock: Clock, keys: bytes | ListingKeyProvider,
                 policy: LoginPolicy | None = None,
                 hasher: PasswordHasher | None = None,
                 failures: AttemptCounter | None = None) -> None:
        self._sessions = sessions
        self._sealer = shopper_totp_sealer(keys)
        self._shoppers = shoppers
        self._clock = clock
        self._policy = policy or LoginPolicy()
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self._failures = failures or SqlFailureWindow(
            sessions, window_s=self._policy.window_s, namespace=ATTEMPTS_NAMESPACE, clock=clock)

    def sign_up(self, *, email: str, password: str, display_name: str,
                payment_token: str, client_ip: str) -> str:
        """Create a shopper with login credentials; returns the shopper id.

        Raises InvalidInput (bad e-mail, password length, name or token), Conflict
        (e-mail already registered; counted against ``client_ip``) or TooManyAttempts
        once ``client_ip`` has had ``LoginPolicy.signup_per_ip`` "address taken" answers in
        the window (before any check; or, when sign-ups from the address under way at
        the same time reach the limit, after the password is hashed and before the
        address is looked up).
        """
        key = f"signup-ip:{client_ip}"
        limits, refusal = {key: self._policy.signup_per_ip}, \
            "too many sign-ups from this address; try again later"
        self._failures.refuse_when_over(limits, refusal)  # early: before the hashing
        address = normalise_email(email)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        password_hash = self._hasher.hash(password)  # before the look-up: same time either way
        with self._failures.reserve(limits, refusal) as attempt:  # the look-up is the guess
            with self._sessions() as db:
                if db.scalar(sa.select(ShopperAccount.shopper_id)
                             .where(ShopperAccount.email == address)) is not None:
                    attempt.count_as_failure()
                    raise Conflict(TAKEN)
            shopper = self._shoppers.register(display_name=display_name,
                                              payment_token=payment_token)
            try:
                with self._sessions.begin() as db:
                    db.add(ShopperAccount(shopper_id=shopper.id, email=address,
                                          password_hash=password_hash, totp_enabled=False,
                                          created_at=self._clock()))
            except IntegrityError as exc:  # a concurrent sign-up took the address
                with self._sessions.begin() as db:
                    db.execute(sa.delete(Shopper).where(Shopper.id == shopper.id))
                attempt.count_as_failure()
                raise Conflict(TAKEN) from exc
        return shopper.id

    def login(self, *, email: str, password: str, client_ip: str,
              totp_code: str | None = None) -> IssuedToken:
        """Check the credentials (and TOTP when enabled) and issue a session token.

        Raises TooManyAttempts before any check when the account or address is
        over its limit (logins under way count until they end; the attempt is not
        counted), AuthenticationFailed otherwise (:data:`BAD_LOGIN` for an unknown
        account, a wrong password, a missing, wrong or already used TOTP code).
        """
        address = email.strip().lower()
        keys = (f"acct:{address}", f"ip:{client_ip}")
        with self._failures.reserve(
                {keys[0]: self._policy.per_account, keys[1]: self._policy.per_ip},
                "too many failed logins; try again later") as attempt:
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in address):
                return _fail(attempt, BAD_LOGIN)  # no such address exists
            with self._sessions() as db:
                account = db.scalar(sa.select(ShopperAccount)
                                    .where(ShopperAccount.email == address))
            ok = self._verify(account.password_hash if account else self._dummy_hash, password)
            if account is None or not ok:
                return _fail(attempt, BAD_LOGIN)
            if account.totp_enabled:
                step = totp_step(self._secret_of(account), totp_code)
                if step is None or not self._claim_step(account.shopper_id, step):
                    return _fail(attempt, BAD_LOGIN)
            return self._issue(account.shopper_id)

    def _secret_of(self, account: ShopperAccount, db: Session | None = None) -> str | None:
        """The TOTP secret of ``account``: its sealed value opened, or the clear one of a
        row written before sealing, sealed now in ``db``'s transaction (default: a new
        one; compare-and-swap with any other process doing it); None when there is none
        or the sealed value does not open (logged). Raises KeyUnavailable when the
        current KEK cannot be read."""
        if account.totp_secret_sealed is not None:
            try:
                return self._sealer.open(account.shopper_id, account.totp_secret_sealed)
            except SealedSecretUnreadable:
                log.warning("shopper %s: the sealed TOTP secret does not open (altered or "
                            "sealed under a KEK no longer readable)", account.shopper_id)
                return None
        if account.totp_secret is not None:
            if db is not None:
                seal_clear_row(db, self._sealer, account.shopper_id, account.totp_secret)
            else:
                with self._sessions.begin() as own:
                    seal_clear_row(own, self._sealer, account.shopper_id, account.totp_secret)
        return account.totp_secret

    def _claim_step(self, shopper_id: str, step: int) -> bool:
        with self._sessions.begin() as db:
            return claim_totp_step(db, ShopperAccount, (ShopperAccount.shopper_id, shopper_id),
                                   step)

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
            account.totp_secret_sealed = self._sealer.seal(shopper_id, secret)
            account.totp_secret = None  # a clear secret of an earlier enrolment goes too
            email = account.email
        return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="storefront")

    def totp_verify(self, shopper_id: str, code: str, *, keep_token: str | None = None) -> int:
        """Turn TOTP on after checking one code (its step then counts as used) and end
        every session of the shopper but ``keep_token``'s (the request's own; sessions
        opened with the password alone must not outlive the second factor); returns how
        many sessions ended. Raises Conflict (not enrolled) or AuthenticationFailed
        (wrong or already used code)."""
        with self._sessions.begin() as db:
            account = _account(db, shopper_id)
            if account.totp_secret is None and account.totp_secret_sealed is None:
                raise Conflict("start TOTP enrolment first (POST /auth/totp/enrol)")
            step = totp_step(self._secret_of(account, db), code)
            if step is None or not claim_totp_step(
                    db, ShopperAccount, (ShopperAccount.shopper_id, shopper_id), step):
                raise AuthenticationFailed("wrong TOTP code")
            account.totp_enabled = True
            others = sa.delete(ShopperAuthSession).where(
                ShopperAuthSession.shopper_id == shopper_id)
            if keep_token is not None:
                others = others.where(ShopperAuthSession.token_hash != token_digest(keep_token))
            ended = db.execute(others.execution_options(synchronize_session=False))
            return int(getattr(ended, "rowcount", 0) or 0)

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
