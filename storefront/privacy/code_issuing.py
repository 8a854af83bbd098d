"""Issuing one-time codes within the per-shopper limit: the step the entry-code and
enrolment-code services share (:mod:`storefront.privacy.entry_codes`,
:mod:`storefront.privacy.enrolment_codes`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from storefront.accounts import TooManyAttempts
from storefront.privacy.one_time_codes import MAX_LIVE, IssuedCode, issue_code, issue_wait


def issue_within_limit(sessions: sessionmaker[Session], *, shopper_id: str, purpose: str,
                       noun: str, now: datetime, ttl: timedelta) -> IssuedCode:
    """A fresh code of ``purpose`` for ``shopper_id``, valid ``ttl`` from ``now`` (shown
    once; only its digest is stored), in one transaction serialised on the shopper's row.

    Raises:
        TooManyAttempts: (429, with the seconds until the oldest expires) while the shopper
            holds ``MAX_LIVE`` unused, unexpired codes of ``purpose``; ``noun`` names them
            in the reason ("entry codes", "enrolment codes").
    """
    with sessions.begin() as db:
        wait = issue_wait(db, shopper_id=shopper_id, purpose=purpose, now=now)
        if wait is not None:
            raise TooManyAttempts(f"at most {MAX_LIVE} unused {noun} at a time; use one or "
                                  "wait until one expires", retry_after_s=wait)
        return issue_code(db, shopper_id=shopper_id, purpose=purpose, now=now, ttl=ttl)
