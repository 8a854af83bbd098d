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

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cart.errors import ConcurrencyConflict, DuplicateDeviceEvent
from cart.event_store import (
    TERMINAL_EVENT_TYPES,
    AppendResult,
    DeviceKey,
    StoredEvent,
    check_batch,
    check_feed_args,
    check_recorded_at,
    device_events,
    split_duplicates,
    utc_now,
)
from cart.events import (
    DEVICE_EVENT_TYPES,
    EVENT_TYPES,
    DeviceEvent,
    Event,
    event_type,
    from_dict,
    to_dict,
)

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


def event_row(session_id: str, version: int, event: Event, recorded_at: datetime) -> dict[str, Any]:
    """The ``cart_events`` row of ``event`` at ``version`` (also used by benchmarks)."""
    device_id, device_seq = (
        event.device_key if isinstance(event, DEVICE_EVENT_TYPES) else (None, None)
    )
    return {
        "session_id": session_id,
        "version": version,
        "type": event_type(event),
        "device_id": device_id,
        "device_seq": device_seq,
        "payload": to_dict(event),
        "recorded_at": recorded_at,
    }


_INSERT = sa.insert(cart_events).returning(cart_events.c.position, sort_by_parameter_order=True)


def _by_key(payloads: Iterable[Any]) -> dict[DeviceKey, Event]:
    found = (from_dict(payload) for payload in payloads)
    return {e.device_key: e for e in found if isinstance(e, DEVICE_EVENT_TYPES)}


class SqlEventStore:
    """An :class:`cart.event_store.EventStore` on a SQLAlchemy engine.

    ``clock`` supplies ``recorded_at`` (timezone-aware; defaults to the system clock).
    The table must exist (Alembic migration, or :func:`create_schema` in tests).
    A batch is one transaction and one multi-row INSERT (``executemany``).
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
                self._check_version(conn, session_id, expected_version)
                return self._insert(conn, session_id, events, expected_version)
        except sa.exc.IntegrityError as exc:
            constraint = _violated_constraint(exc)
            duplicate = self._find_duplicate(events) if constraint == DEVICE_CONSTRAINT else None
            if duplicate is not None:
                raise duplicate from exc
            if constraint == VERSION_CONSTRAINT:
                current = self._current_version(session_id)
                raise ConcurrencyConflict(session_id, expected_version, current) from exc
            raise

    def append_batch(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> AppendResult:
        """See :meth:`cart.event_store.EventStore.append_batch`.

        Known device keys are looked up in the same transaction; a concurrent writer
        that stores one of them first makes the insert fail, reported as
        ConcurrencyConflict (``actual_version`` None) so the caller retries.
        """
        check_batch(session_id, events, expected_version, allow_repeats=True)
        try:
            with self._engine.begin() as conn:
                known = self._check_version(
                    conn, session_id, expected_version, device_events(events)
                )
                keep, duplicates = split_duplicates(events, lambda _: known)
                stored = self._insert(conn, session_id, keep, expected_version)
                return AppendResult(stored, duplicates)
        except sa.exc.IntegrityError as exc:
            raise ConcurrencyConflict(session_id, expected_version, None) from exc

    def _check_version(
        self,
        conn: sa.Connection,
        session_id: str,
        expected: int,
        devices: list[DeviceEvent] | None = None,
    ) -> dict[DeviceKey, Event]:
        """Raise ConcurrencyConflict unless the session is at ``expected``; returns the
        stored events among ``devices``' keys.

        On PostgreSQL this is one round trip: the advisory lock, the version and the
        known device keys. Its snapshot may predate the lock; UNIQUE(session_id,
        version) and UNIQUE(device_id, device_seq) still refuse a stale writer, and
        the caller reports that as ConcurrencyConflict.
        """
        version = sa.select(sa.func.coalesce(sa.func.max(cart_events.c.version), 0)).where(
            cart_events.c.session_id == session_id
        )
        if conn.dialect.name != "postgresql":
            current = int(conn.execute(version).scalar_one())
            known = self._stored_keys(conn, devices or []) if current == expected else {}
        else:
            lock = sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)
            columns: list[Any] = [lock, version.scalar_subquery()]
            if devices:
                columns.append(self._known_query(devices, sa.func.json_agg).scalar_subquery())
            row = conn.execute(sa.select(*columns)).one()
            current = int(row[1])
            known = _by_key(row[2] or []) if devices else {}
        if current != expected:
            raise ConcurrencyConflict(session_id, expected, current)
        return known

    @staticmethod
    def _known_query(devices: list[DeviceEvent], aggregate: Any = None) -> sa.Select[Any]:
        key = sa.tuple_(cart_events.c.device_id, cart_events.c.device_seq)
        column = cart_events.c.payload if aggregate is None else aggregate(cart_events.c.payload)
        return sa.select(column).where(key.in_([e.device_key for e in devices]))

    def _insert(
        self, conn: sa.Connection, session_id: str, events: Sequence[Event], current: int
    ) -> list[StoredEvent]:
        if not events:
            return []
        recorded_at = check_recorded_at(self._clock())
        rows = [event_row(session_id, v, e, recorded_at) for v, e in enumerate(events, current + 1)]
        positions = conn.execute(_INSERT, rows).scalars().all()
        return [
            StoredEvent(session_id, row["version"], position, event, recorded_at)
            for row, position, event in zip(rows, positions, events, strict=True)
        ]

    @classmethod
    def _stored_keys(cls, conn: sa.Connection, events: list[DeviceEvent]) -> dict[DeviceKey, Event]:
        if not events:
            return {}
        return _by_key(conn.execute(cls._known_query(events)).scalars())

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
            known = self._stored_keys(conn, device_events(events))
        for item in device_events(events):
            stored = known.get(item.device_key)
            if stored is not None:
                return DuplicateDeviceEvent(item.device_id, item.device_seq, stored == item)
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

    def load_control(self, session_id: str) -> tuple[int, list[StoredEvent]]:
        """See :meth:`cart.event_store.EventStore.load_control`."""
        query = (
            sa.select(cart_events)
            .where(cart_events.c.session_id == session_id, cart_events.c.device_id.is_(None))
            .order_by(cart_events.c.version)
        )
        with self._engine.connect() as conn:
            version = self._version_query(conn, session_id)
            return version, [self._stored(row) for row in conn.execute(query).mappings()]

    def idle_sessions(self, before: datetime, limit: int) -> list[str]:
        """See :meth:`cart.event_store.EventStore.idle_sessions` (a grouped scan: a sweep)."""
        check_feed_args(0, limit)
        terminal = [name for name, cls in EVENT_TYPES.items() if cls in TERMINAL_EVENT_TYPES]
        is_terminal = sa.case((cart_events.c.type.in_(terminal), 1), else_=0)
        query = (
            sa.select(cart_events.c.session_id)
            .group_by(cart_events.c.session_id)
            .having(sa.func.max(cart_events.c.recorded_at) < check_recorded_at(before))
            .having(sa.func.sum(is_terminal) == 0)
            .order_by(cart_events.c.session_id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return list(conn.execute(query).scalars())
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
