"""Enrolment codes: the shopper's proof of presence for a staff-assisted palm enrolment.

Staff may enrol a palm (``POST /shoppers/{id}/palms``) only with a code the signed-in
shopper created (``POST /me/enrolment-codes``, or the button on the portal's palms
page) and shows them: 10 characters (:mod:`storefront.privacy.one_time_codes`), valid
``ttl`` (default 10 minutes), single use, stored only hashed in ``entry_codes`` with
purpose ``enrolment`` (a gate never accepts it, and an entry code is never accepted
here). A shopper registered by staff without a sign-in account cannot make one, so
staff cannot enrol them: they sign up first (or enrol themselves at the kiosk).

A shopper holds at most 5 live enrolment codes (429 beyond,
:func:`storefront.privacy.one_time_codes.issue_wait`). Failed code attempts are counted
per staff member and per client address like failed logins, in the database across every
process (:class:`storefront.security.attempts_sql.SqlFailureWindow`, namespace
:data:`ATTEMPTS_NAMESPACE`): over the limit, TooManyAttempts (HTTP 429) before any check.
Each check is counted before the code is looked up and taken back when the code is
usable, so checks sent in parallel get no more wrong codes looked up than the limit.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.privacy.code_issuing import issue_within_limit
from storefront.privacy.one_time_codes import (
    ENROLMENT,
    EnrolmentCodeRefused,
    IssuedCode,
    is_usable,
    refused_reason,
)
from storefront.security.attempts import AttemptCounter
from storefront.security.attempts_sql import SqlFailureWindow

__all__ = ["EnrolmentCodeRefused", "EnrolmentCodeService", "refused_reason"]

PER_STAFF = 10
PER_CLIENT = 20
WINDOW_S = 900.0
ATTEMPTS_NAMESPACE = "enrolment-codes"


class EnrolmentCodeService:
    """Issue enrolment codes to signed-in shoppers; check them for staff (throttled).

    ``failures``: where wrong codes are counted (default: the database, namespace
    :data:`ATTEMPTS_NAMESPACE`, shared by every process; ``window_s`` is its window).
    """

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock,
                 ttl: timedelta = timedelta(minutes=10), per_staff: int = PER_STAFF,
                 per_client: int = PER_CLIENT, window_s: float = WINDOW_S,
                 failures: AttemptCounter | None = None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._ttl = ttl
        self._limits = (per_staff, per_client)
        self._failures = failures or SqlFailureWindow(
            sessions, window_s=window_s, namespace=ATTEMPTS_NAMESPACE, clock=clock)

    @property
    def ttl(self) -> timedelta:
        """How long a code is valid."""
        return self._ttl

    def issue(self, shopper_id: str) -> IssuedCode:
        """A fresh enrolment code for ``shopper_id`` (shown once); TooManyAttempts (429, with
        the seconds until the oldest expires) while they hold 5 unused, unexpired ones."""
        return issue_within_limit(self._sessions, shopper_id=shopper_id, purpose=ENROLMENT,
                                  noun="enrolment codes", now=self._clock(), ttl=self._ttl)

    def check(self, code: str | None, *, shopper_id: str, staff_id: str, client: str) -> str:
        """The code when it is usable for ``shopper_id`` now (it is used up by the
        enrolment's final write, :mod:`storefront.privacy.enrolment_guard`).

        Raises TooManyAttempts once ``staff_id`` or ``client`` has had too many failed
        codes in the window (before any check), EnrolmentCodeRefused (counted) otherwise.
        """
        keys = {f"staff:{staff_id}": self._limits[0], f"client:{client}": self._limits[1]}
        with self._failures.reserve(keys, "too many wrong enrolment codes; try again "
                                          "later") as attempt:
            if code:
                with self._sessions() as db:
                    if is_usable(db, code, purpose=ENROLMENT, now=self._clock(),
                                 shopper_id=shopper_id):
                        return code
            attempt.count_as_failure()
            raise EnrolmentCodeRefused(refused_reason())
