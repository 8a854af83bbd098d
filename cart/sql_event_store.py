"""The event store on SQL (PostgreSQL in production, SQLite for tests), SQLAlchemy Core.

The table's unique constraints do the real work: UNIQUE(session_id, version) makes
appends optimistic (two writers expecting the same version cannot both land) and
UNIQUE(device_id, device_seq) makes item events idempotent across processes. A
refused insert is translated into the matching typed error.

On PostgreSQL appends also take one transaction-scoped advisory lock, so global
positions become visible in increasing order: without it a reader of :meth:`since`
could pass position 8 while position 7 is still uncommitted and never see it. This
serialises appends store-wide (they are short); partition the feed by store if
that ever becomes the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cart.errors import ConcurrencyConflict, DuplicateDeviceEvent
from cart.event_store import (
    StoredEvent,
    check_batch,
    check_feed_args,
    check_recorded_at,
    item_events,
    utc_now,
)
from cart.events import Event, ItemPicked, ItemPutBack, event_type, from_dict, to_dict

metadata = sa.MetaData()
"""Target metadata for storefront's Alembic migrations."""

VERSION_CONSTRAINT = "uq_cart_events_session_version"
DEVICE_CONSTRAINT = "uq_cart_events_device"

cart_events = sa.Table(
    "cart_events",
    metadata,
    sa.Column(
        "position",
        # SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias).
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.Identity(),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("device_seq", sa.BigInteger(), nullable=True),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("session_id", "version", name=VERSION_CONSTRAINT),
    sa.UniqueConstraint("device_id", "device_seq", name=DEVICE_CONSTRAINT),
)

_ADVISORY_LOCK_KEY = 0x0CA27E7E
"""Arbitrary 64-bit key of the PostgreSQL advisory lock that orders appends."""

_SQLITE_COLUMNS = {
    "cart_events.session_id, cart_events.version": VERSION_CONSTRAINT,
    "cart_events.device_id, cart_events.device_seq": DEVICE_CONSTRAINT,
}


def create_schema(engine: sa.Engine) -> None:
    """Create the ``cart_events`` table if missing (tests only; production uses Alembic)."""
    metadata.create_all(engine)


def _as_utc(value: datetime) -> datetime:
    # SQLite has no time zone type: values are written in UTC and read back naive.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _violated_constraint(exc: sa.exc.IntegrityError) -> str | None:
    """The name of the unique constraint that refused an insert, if recognisable."""
    diag = getattr(exc.orig, "diag", None)  # psycopg
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name
    message = str(exc.orig)
    for columns, constraint in _SQLITE_COLUMNS.items():
        if columns in message:
            return constraint
    return None


class SqlEventStore:
    """An :class:`cart.event_store.EventStore` on a SQLAlchemy engine.

    ``clock`` supplies ``recorded_at`` (timezone-aware; defaults to the system clock).
    The table must exist (Alembic migration, or :func:`create_schema` in tests).
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    def append(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> list[StoredEvent]:
        """See :meth:`cart.event_store.EventStore.append` (same errors, same atomicity)."""
        check_batch(session_id, events, expected_version)
        try:
            with self._engine.begin() as conn:
                return self._append_in(conn, session_id, events, expected_version)
        except sa.exc.IntegrityError as exc:
            constraint = _violated_constraint(exc)
            duplicate = self._find_duplicate(events) if constraint == DEVICE_CONSTRAINT else None
            if duplicate is not None:
                raise duplicate from exc
            if constraint == VERSION_CONSTRAINT:
                current = self._current_version(session_id)
                raise ConcurrencyConflict(session_id, expected_version, current) from exc
            raise

    def _append_in(
        self,
        conn: sa.Connection,
        session_id: str,
        events: Sequence[Event],
        expected_version: int,
    ) -> list[StoredEvent]:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
        current = self._version_query(conn, session_id)
        if current != expected_version:
            raise ConcurrencyConflict(session_id, expected_version, current)
        recorded_at = check_recorded_at(self._clock())
        stored: list[StoredEvent] = []
        for version, event in enumerate(events, start=current + 1):
            device_id, device_seq = (
                event.device_key if isinstance(event, ItemPicked | ItemPutBack) else (None, None)
            )
            row = {
                "session_id": session_id,
                "version": version,
                "type": event_type(event),
                "device_id": device_id,
                "device_seq": device_seq,
                "payload": to_dict(event),
                "recorded_at": recorded_at,
            }
            insert = sa.insert(cart_events).values(row).returning(cart_events.c.position)
            position = conn.execute(insert).scalar_one()
            stored.append(StoredEvent(session_id, version, position, event, recorded_at))
        return stored

    @staticmethod
    def _version_query(conn: sa.Connection, session_id: str) -> int:
        query = sa.select(sa.func.coalesce(sa.func.max(cart_events.c.version), 0)).where(
            cart_events.c.session_id == session_id
        )
        return int(conn.execute(query).scalar_one())

    def _current_version(self, session_id: str) -> int:
        with self._engine.connect() as conn:
            return self._version_query(conn, session_id)

    def _find_duplicate(self, events: Sequence[Event]) -> DuplicateDeviceEvent | None:
        """The error for the first batch item whose device key is stored, if any."""
        with self._engine.connect() as conn:
            for item in item_events(events):
                query = sa.select(cart_events.c.payload).where(
                    cart_events.c.device_id == item.device_id,
                    cart_events.c.device_seq == item.device_seq,
                )
                payload = conn.execute(query).scalar_one_or_none()
                if payload is not None:
                    same = from_dict(payload) == item
                    return DuplicateDeviceEvent(item.device_id, item.device_seq, same)
        return None

    def load(self, session_id: str) -> list[StoredEvent]:
        """See :meth:`cart.event_store.EventStore.load`."""
        query = (
            sa.select(cart_events)
            .where(cart_events.c.session_id == session_id)
            .order_by(cart_events.c.version)
        )
        with self._engine.connect() as conn:
            return [self._stored(row) for row in conn.execute(query).mappings()]

    def since(self, position: int, limit: int) -> list[StoredEvent]:
        """See :meth:`cart.event_store.EventStore.since`."""
        check_feed_args(position, limit)
        query = (
            sa.select(cart_events)
            .where(cart_events.c.position > position)
            .order_by(cart_events.c.position)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [self._stored(row) for row in conn.execute(query).mappings()]

    @staticmethod
    def _stored(row: sa.RowMapping) -> StoredEvent:
        payload: Any = row["payload"]
        return StoredEvent(
            session_id=row["session_id"],
            version=row["version"],
            position=row["position"],
            event=from_dict(payload),
            recorded_at=_as_utc(row["recorded_at"]),
        )
