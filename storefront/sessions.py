"""Shopping sessions: the read model (``shopping_sessions``) and item-event ingest.

The session's event log in ``cart`` is the truth; the read model is updated after
each lifecycle change and serves lists and queues.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

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
    """Writes and reads the ``shopping_sessions`` table.

    ``store_id``: the store whose lists (:meth:`with_status`: the staffed-checkout queue,
    the console's live and review lists) this read model gives, and whose sessions
    :meth:`require_in_store` admits; None: every store's. Other look-ups by id are not
    scoped (a shopper's session left open in another store is still closed when they
    enter here).
    """

    def __init__(self, sessions: sessionmaker[Session], store_id: str | None = None) -> None:
        self._sessions = sessions
        self._store_id = store_id

    def opened(self, *, session_id: str, shopper_id: str, store_id: str, entry_method: str,
               at: datetime) -> None:
        """Record a newly opened session."""
        with self._sessions.begin() as db:
            db.add(ShoppingSession(id=session_id, shopper_id=shopper_id, store_id=store_id,
                                   entry_method=entry_method, status="open", opened_at=at))

    def update(self, session_id: str, **values: object) -> None:
        """Set columns of one session (status, exited_at, total_minor, staffed_reason,
        priced_lines); one UPDATE on the table (no ORM unit of work)."""
        params = {f"v_{key}": value for key, value in values.items()}
        with self._sessions.begin() as db:
            db.connection().execute(_update_of(tuple(sorted(values))),
                                    {**params, "v_id": session_id})

    def claim_exit(self, session_id: str, token: str, now: datetime, lease: timedelta) -> bool:
        """Take the session's exit lease; False while another live claim holds it (or the
        session is unknown, settled or staffed). See :meth:`claim`."""
        return self.claim(session_id, token, now, lease) is not None

    def claim(self, session_id: str, token: str, now: datetime,
              lease: timedelta) -> SessionView | None:
        """Take the session's exit lease and return the session as it stands; None while
        another live claim holds it, or when the session is unknown, settled or staffed.

        One atomic UPDATE ... RETURNING (a row lock on PostgreSQL, the write lock on
        SQLite), so two processes exiting the same session cannot both win, and the
        winner reads the row it claimed without a second query. A claim older than
        ``lease`` is taken over: its holder is presumed dead.
        """
        with self._sessions.begin() as db:
            row = db.connection().execute(_CLAIM, {
                "claim_id": session_id, "claim_token": token, "claim_at": now,
                "stale_before": now - lease}).first()
        return None if row is None else _view(row)

    def release_exit(self, session_id: str, token: str) -> None:
        """Give the exit lease back (only if ``token`` still holds it)."""
        row = ShoppingSession
        with self._sessions.begin() as db:
            db.execute(sa.update(row).where(row.id == session_id, row.exit_claim == token)
                       .values(exit_claim=None, exit_claimed_at=None))

    def finish_exit(self, session_id: str, **values: object) -> None:
        """Set the columns of a session whose exit ended (``status`` settled or staffed,
        ``total_minor``, ...) and give its exit lease back, in one write.

        The lease is cleared whoever holds it: a settled or staffed session cannot be
        claimed again (:meth:`claim`), so no live exit can depend on it.
        """
        self.update(session_id, exit_claim=None, exit_claimed_at=None, **values)

    def get(self, session_id: str) -> SessionView:
        """The session; raises NotFound."""
        with self._sessions() as db:
            row = db.get(ShoppingSession, session_id)
            if row is None:
                raise NotFound(f"shopping session {session_id!r} does not exist")
            return _view(row)

    def store_of(self, session_id: str) -> str:
        """The store a session was opened in; raises NotFound."""
        with self._sessions() as db:
            store = db.scalar(sa.select(ShoppingSession.store_id)
                              .where(ShoppingSession.id == session_id))
        if store is None:
            raise NotFound(f"shopping session {session_id!r} does not exist")
        return str(store)

    def require_in_store(self, session_id: str) -> None:
        """Raise NotFound unless the session exists and, when this read model has a store,
        was opened in it (devices and staff of one store never touch another's)."""
        store = self.store_of(session_id)
        if self._store_id is not None and store != self._store_id:
            raise NotFound(f"shopping session {session_id!r} does not exist in this store")

    def open_of(self, shopper_id: str, store_id: str | None = None) -> list[str]:
        """Ids of the shopper's sessions still open (entered, no exit yet), oldest first;
        with ``store_id``, only those opened in that store."""
        row = ShoppingSession
        query = sa.select(row.id).where(row.shopper_id == shopper_id, row.status == "open")
        if store_id is not None:
            query = query.where(row.store_id == store_id)
        with self._sessions() as db:
            return list(db.scalars(query.order_by(row.opened_at)).all())

    def with_status(self, status: str) -> list[SessionView]:
        """Sessions in ``status`` (e.g. ``staffed``) of this read model's store, oldest
        first."""
        query = sa.select(ShoppingSession).where(ShoppingSession.status == status)
        if self._store_id is not None:
            query = query.where(ShoppingSession.store_id == self._store_id)
        with self._sessions() as db:
            rows = db.scalars(query.order_by(ShoppingSession.exited_at,
                                             ShoppingSession.id)).all()
            return [_view(row) for row in rows]


_TABLE = cast(sa.Table, ShoppingSession.__table__)
_VIEW_COLUMNS = [_TABLE.c[name] for name in (
    "id", "shopper_id", "status", "entry_method", "opened_at", "exited_at", "total_minor",
    "staffed_reason", "exit_claim", "priced_lines")]
_CLAIM = (sa.update(_TABLE)
          .where(_TABLE.c.id == sa.bindparam("claim_id"),
                 _TABLE.c.status.not_in(("settled", "staffed")),
                 sa.or_(_TABLE.c.exit_claim.is_(None),
                        _TABLE.c.exit_claimed_at < sa.bindparam(
                            "stale_before", type_=_TABLE.c.exit_claimed_at.type)))
          .values(exit_claim=sa.bindparam("claim_token"),
                  exit_claimed_at=sa.bindparam("claim_at"))
          .returning(*_VIEW_COLUMNS))


@functools.cache
def _update_of(keys: tuple[str, ...]) -> sa.Update:
    """UPDATE ``keys`` of one session (parameters ``v_<column>``, WHERE id = ``v_id``);
    built once per column set. Raises KeyError for a column the table does not have."""
    return (sa.update(_TABLE).where(_TABLE.c.id == sa.bindparam("v_id"))
            .values({key: sa.bindparam(f"v_{key}", type_=_TABLE.c[key].type) for key in keys}))


def _view(row: ShoppingSession | sa.Row[Any]) -> SessionView:
    return SessionView(row.id, row.shopper_id, row.status, row.entry_method, row.opened_at,
                       row.exited_at, row.total_minor, row.staffed_reason, row.exit_claim,
                       tuple(row.priced_lines or ()))


class SessionScope:
    """Sessions of this store only: devices and services of one store never touch a
    session opened in another store sharing the database (it does not exist for them).

    A session's store never changes, so each session found in this store is remembered
    (at most ``remember`` of them, the oldest forgotten first).
    """

    def __init__(self, read_model: SessionReadModel, *, remember: int = 10_000) -> None:
        """``read_model``: one scoped to the store (its ``store_id`` set)."""
        self._read_model = read_model
        self._remember = remember
        self._known: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, session_id: str) -> None:
        """Raise NotFound unless ``session_id`` was opened in this store."""
        with self._lock:
            if session_id in self._known:
                return
        self._read_model.require_in_store(session_id)
        with self._lock:
            self._known[session_id] = None
            while len(self._known) > self._remember:
                self._known.popitem(last=False)


class ItemIngest:
    """Validates item events against the catalogue and appends them to the session log."""

    def __init__(self, *, carts: SessionService, catalogue: Catalogue,
                 scope: SessionScope | None = None) -> None:
        """``scope``: refuse sessions of other stores (None: any session)."""
        self._carts = carts
        self._catalogue = catalogue
        self._scope = scope

    def record(self, *, session_id: str, kind: Literal["picked", "put_back"],
               product_code: str, quantity: int, device_id: str, device_seq: int,
               sensor_time: datetime, confidence: float = 1.0) -> StoredEvent:
        """Append one item event, exactly once per (device id, device sequence).

        A product withdrawn from sale is recorded like any other (the shopper holds it):
        pricing refuses it, so the exit sends the cart to the staffed checkout.

        Raises:
            UnknownProduct: the code is not in the catalogue.
            NotFound: no such session (in this store, with a ``scope``).
            cart.errors.SessionClosed: the session is no longer open.
            cart.errors.DuplicateDeviceEvent: this (device id, sequence) is already recorded.
            cart.errors.InvalidCommand: quantity, confidence or time out of range.
        """
        self._catalogue.get(product_code)
        if self._scope is not None:
            self._scope.check(session_id)
        command = RecordItem(kind=kind, product_code=product_code, quantity=quantity,
                             device_id=device_id, device_seq=device_seq,
                             sensor_time=sensor_time, confidence=confidence)
        try:
            return self._carts.record_item(session_id, command)
        except SessionNotFound as exc:
            raise NotFound(f"shopping session {session_id!r} does not exist") from exc
