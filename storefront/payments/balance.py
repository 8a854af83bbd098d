"""Unpaid balances: what keeps a shopper out until settled at the staffed checkout."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.db.models import Payment, ShoppingSession
from storefront.money import format_minor

NO_EXIT_RECORDED = "no exit recorded"
"""How the reason of a session closed because its shopper entered again begins
(:meth:`storefront.gates.GateService`); such a session with an empty cart owes nothing."""


def unpaid_balance(db: sessionmaker[Session], *, shopper_id: str, now: datetime,
                   grace: timedelta) -> str | None:
    """The reason the shopper owes money, or None.

    Owed: a session at the staffed checkout whose payment failed (declined,
    refused, hold not released), or one left unsettled for longer than ``grace``
    since exit. A session whose exit was never recorded and whose cart was empty
    (priced at zero with no line: the shopper entered again and had taken nothing)
    owes nothing, however long it waits for review. Raises nothing; ``now`` is
    tz-aware UTC.
    """
    row, pay = ShoppingSession, Payment
    with db() as s:
        found = s.execute(
            sa.select(row.id, row.total_minor, row.staffed_reason, row.exited_at, pay.state,
                      pay.failure_reason, row.priced_lines, pay.currency)
            .outerjoin(pay, pay.session_id == row.id)
            .where(row.shopper_id == shopper_id, row.status == "staffed")
            .order_by(row.exited_at)).all()
    for session_id, total, reason, exited_at, state, failure, lines, currency in found:
        failed = state in ("declined", "failed") or failure is not None
        if not failed and _left_empty(total, reason, lines):
            continue
        overdue = exited_at is not None and exited_at < now - grace
        if failed or overdue:
            why = reason or "not settled"
            if not total:  # nothing priced (an empty cart, or no exit recorded)
                return (f"session {session_id} is still open at the staffed checkout "
                        f"({why}); please settle it there")
            owed = format_minor(total, currency) if currency else f"{total} minor units"
            return (f"unpaid balance of {owed} from session {session_id} "
                    f"({why}); please settle it at the staffed checkout")
    return None


def _left_empty(total: int | None, reason: str | None, lines: object) -> bool:
    """A session closed because its shopper entered again, with nothing in its cart."""
    return (total == 0 and not lines
            and (reason or "").startswith(NO_EXIT_RECORDED))
