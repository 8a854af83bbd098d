"""App entry codes: shoppers without a palm (or who prefer not to use it) enter with a
short-lived, single-use code shown in the app (e.g. as a QR code) and read by a gate.

A code is 10 characters of the Crockford base32 alphabet (50 random bits from
``secrets``), valid ``ttl`` (default 2 minutes), stored only as its SHA-256 with purpose
``entry`` (:mod:`storefront.privacy.one_time_codes`, shared with enrolment codes, which
a gate never accepts). A redemption marks it used in one conditional UPDATE, so two
gates cannot both accept it. A shopper holds at most 5 live entry codes (429 beyond,
:func:`storefront.privacy.one_time_codes.issue_wait`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.errors import EntryRefused
from storefront.gates import OTHER_WAY, GateService
from storefront.privacy.code_issuing import issue_within_limit
from storefront.privacy.one_time_codes import (  # noqa: F401 - ALPHABET, LENGTH re-exported
    ALPHABET,
    ENTRY,
    LENGTH,
    IssuedCode,
    use_code,
)


class EntryCodeService:
    """Issue codes to signed-in shoppers; redeem them at a gate."""

    def __init__(self, *, sessions: sessionmaker[Session], gates: GateService, clock: Clock,
                 ttl: timedelta = timedelta(minutes=2)) -> None:
        self._sessions = sessions
        self._gates = gates
        self._clock = clock
        self._ttl = ttl

    def issue(self, shopper_id: str) -> IssuedCode:
        """A fresh code for ``shopper_id``; EntryRefused (403, with the reason) when the
        shopper may not enter now (an unpaid balance: the gate would refuse the code);
        TooManyAttempts (429, with the seconds until the oldest expires) while they hold 5
        unused, unexpired entry codes."""
        refusal = self._gates.entry_refusal(shopper_id)
        if refusal is not None:
            raise EntryRefused(refusal)
        return issue_within_limit(self._sessions, shopper_id=shopper_id, purpose=ENTRY,
                                  noun="entry codes", now=self._clock(), ttl=self._ttl)

    def redeem(self, code: str) -> tuple[str, str]:
        """Use the code once and open a session; returns ``(session_id, shopper_id)``.

        Raises EntryRefused for an unknown, used or expired code (or one made for
        another purpose), or when the shopper may not enter (unpaid balance, declined
        hold).
        """
        with self._sessions.begin() as db:
            shopper_id = use_code(db, code, purpose=ENTRY, now=self._clock())
        if shopper_id is None:
            raise EntryRefused(f"entry code unknown, already used or expired; {OTHER_WAY}")
        return self._gates.open_session(shopper_id=shopper_id, entry_method="app"), shopper_id
