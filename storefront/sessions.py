"""Shopping sessions: the read model (``shopping_sessions``) and item-event ingest.

The session's event log in ``cart`` is the truth; the read model is updated after
each lifecycle change and serves lists and queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.errors import SessionNotFound
from cart.event_store import StoredEvent
from cart.service import SessionService
from cart.session import RecordItem
from storefront.catalog import Catalogue
from storefront.db.models import ShoppingSession
from storefront.errors import NotFound


@dataclass(frozen=True)
class SessionView:
    """A shopping session as listed (money in minor units)."""

    id: str
    shopper_id: str
    status: str
    entry_method: str
    opened_at: datetime
    exited_at: datetime | None
    total_minor: int | None
    staffed_reason: str | None
    exit_claim: str | None = None
    priced_lines: tuple[dict[str, Any], ...] = ()


class SessionReadModel:
    """Writes and reads the ``shopping_sessions`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def opened(self, *, session_id: str, shopper_id: str, store_id: str, entry_method: str,
               at: datetime) -> None:
        """Record a newly opened session."""
        with self._sessions.begin() as db:
            db.add(ShoppingSession(id=session_id, shopper_id=shopper_id, store_id=store_id,
                                   entry_method=entry_method, status="open", opened_at=at))

    def update(self, session_id: str, **values: object) -> None:
        """Set columns of one session (status, exited_at, total_minor, staffed_reason)."""
        with self._sessions.begin() as db:
            db.execute(sa.update(ShoppingSession)
                       .where(ShoppingSession.id == session_id).values(**values))

    def claim_exit(self, session_id: str, token: str, now: datetime, lease: timedelta) -> bool:
        """Take the session's exit lease; False while another live claim holds it.

        One atomic UPDATE (a row lock on PostgreSQL, the write lock on SQLite), so
        two processes exiting the same session cannot both win. A claim older than
        ``lease`` is taken over: its holder is presumed dead.
        """
        row = ShoppingSession
        with self._sessions.begin() as db:
            result = db.execute(
                sa.update(row)
                .where(row.id == session_id, row.status.not_in(("settled", "staffed")),
                       sa.or_(row.exit_claim.is_(None), row.exit_claimed_at < now - lease))
                .values(exit_claim=token, exit_claimed_at=now))
            return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def release_exit(self, session_id: str, token: str) -> None:
        """Give the exit lease back (only if ``token`` still holds it)."""
        row = ShoppingSession
        with self._sessions.begin() as db:
            db.execute(sa.update(row).where(row.id == session_id, row.exit_claim == token)
                       .values(exit_claim=None, exit_claimed_at=None))

    def get(self, session_id: str) -> SessionView:
        """The session; raises NotFound."""
        with self._sessions() as db:
            row = db.get(ShoppingSession, session_id)
            if row is None:
                raise NotFound(f"shopping session {session_id!r} does not exist")
            return _view(row)

    def open_of(self, shopper_id: str) -> list[str]:
        """Ids of the shopper's sessions still open (entered, no exit yet), oldest first."""
        with self._sessions() as db:
            return list(db.scalars(sa.select(ShoppingSession.id)
                                   .where(ShoppingSession.shopper_id == shopper_id,
                                          ShoppingSession.status == "open")
                                   .order_by(ShoppingSession.opened_at)).all())

    def with_status(self, status: str) -> list[SessionView]:
        """Sessions in ``status`` (e.g. ``staffed``), oldest first."""
        with self._sessions() as db:
            rows = db.scalars(sa.select(ShoppingSession)
                              .where(ShoppingSession.status == status)
                              .order_by(ShoppingSession.exited_at, ShoppingSession.id)).all()
            return [_view(row) for row in rows]


def _view(row: ShoppingSession) -> SessionView:
    return SessionView(row.id, row.shopper_id, row.status, row.entry_method, row.opened_at,
                       row.exited_at, row.total_minor, row.staffed_reason, row.exit_claim,
                       tuple(row.priced_lines or ()))


class ItemIngest:
    """Validates item events against the catalogue and appends them to the session log."""

    def __init__(self, *, carts: SessionService, catalogue: Catalogue) -> None:
        self._carts = carts
        self._catalogue = catalogue

    def record(self, *, session_id: str, kind: Literal["picked", "put_back"],
               product_code: str, quantity: int, device_id: str, device_seq: int,
               sensor_time: datetime, confidence: float = 1.0) -> StoredEvent:
        """Append one item event, exactly once per (device id, device sequence).

        Raises:
            UnknownProduct: the code is not in the catalogue.
            NotFound: no such session.
            cart.errors.SessionClosed: the session is no longer open.
            cart.errors.DuplicateDeviceEvent: this (device id, sequence) is already recorded.
            cart.errors.InvalidCommand: quantity, confidence or time out of range.
        """
        self._catalogue.get(product_code)
        command = RecordItem(kind=kind, product_code=product_code, quantity=quantity,
                             device_id=device_id, device_seq=device_seq,
                             sensor_time=sensor_time, confidence=confidence)
        try:
            return self._carts.record_item(session_id, command)
        except SessionNotFound as exc:
            raise NotFound(f"shopping session {session_id!r} does not exist") from exc
