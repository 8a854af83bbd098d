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

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from cart.errors import ConcurrencyConflict, DuplicateDeviceEvent, InvalidCommand
from cart.event_store import (
    TERMINAL_EVENT_TYPES,
    AppendResult,
    DeviceKey,
    SessionBatch,
    StoredEvent,
    check_batch,
    check_feed_args,
    check_many,
    check_recorded_at,
    device_events,
    split_many,
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
    device_id, device_seq = _device_key(event)
    return {
        "session_id": session_id,
        "version": version,
        "type": event_type(event),
        "device_id": device_id,
        "device_seq": device_seq,
        "payload": to_dict(event),
        "recorded_at": recorded_at,
    }


# Constant statement texts whose rows travel as one JSON document (PostgreSQL: one
# round trip each whatever the batch size, cached and prepared by psycopg) instead of
# a VALUES list that grows, and has to be compiled and parsed again, with each batch.
# Each row is [session_id, version, type, device_id, device_seq, payload]; both
# engines hand the payload's text on unchanged (exact numbers).
_PG_HEADS = sa.text(
    "SELECT pg_advisory_xact_lock(:key),"
    " (SELECT json_object_agg(s.id, v.version) FROM json_array_elements_text("
    "  CAST(:sessions AS json)) AS s(id) CROSS JOIN LATERAL (SELECT max(e.version) AS version"
    "  FROM cart_events e WHERE e.session_id = s.id) AS v WHERE v.version IS NOT NULL),"
    " (SELECT json_agg(e.payload) FROM json_array_elements(CAST(:devices AS json)) AS k(key)"
    "  JOIN cart_events e"
    "  ON e.device_id = k.key->>0 AND e.device_seq = CAST(k.key->>1 AS bigint))"
)
_SQLITE_VERSIONS = sa.text(
    "SELECT s.value, (SELECT max(e.version) FROM cart_events e WHERE e.session_id = s.value)"
    " FROM json_each(:sessions) AS s"
)
_SQLITE_KNOWN = sa.text(
    "SELECT e.payload FROM json_each(:devices) AS k JOIN cart_events e"
    " ON e.device_id = json_extract(k.value, '$[0]')"
    " AND e.device_seq = json_extract(k.value, '$[1]')"
)
_RECORDED_AT = sa.bindparam("recorded_at", type_=cart_events.c.recorded_at.type)
_INSERT_ROWS = {
    "postgresql": sa.text(
        "INSERT INTO cart_events"
        " (session_id, version, type, device_id, device_seq, payload, recorded_at)"
        " SELECT r.row->>0, CAST(r.row->>1 AS integer), r.row->>2, r.row->>3,"
        "  CAST(r.row->>4 AS bigint), r.row->5, :recorded_at"
        " FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS r(row, n)"
        " ORDER BY r.n RETURNING position, session_id, version"
    ).bindparams(_RECORDED_AT),
    "sqlite": sa.text(
        "INSERT INTO cart_events"
        " (session_id, version, type, device_id, device_seq, payload, recorded_at)"
        " SELECT json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]'),"
        "  json_extract(r.value, '$[2]'), json_extract(r.value, '$[3]'),"
        "  json_extract(r.value, '$[4]'), json_extract(r.value, '$[5]'), :recorded_at"
        " FROM json_each(:rows) AS r ORDER BY r.key RETURNING position, session_id, version"
    ).bindparams(_RECORDED_AT),
}


_LOAD = (
    sa.select(cart_events)
    .where(cart_events.c.session_id == sa.bindparam("session_id"))
    .order_by(cart_events.c.version)
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _insert_rows(
    conn: sa.Connection, entries: list[tuple[str, int, Event]], recorded_at: datetime
) -> dict[tuple[str, int], int]:
    """Insert the (session id, version, event) ``entries`` in one statement, positions
    in entry order; returns the position per (session id, version)."""
    statement = _INSERT_ROWS[conn.dialect.name]
    document = _dumps([[sid, version, event_type(event), *_device_key(event), to_dict(event)]
                       for sid, version, event in entries])
    result = conn.execute(statement, {"recorded_at": recorded_at, "rows": document})
    return {(sid, version): position for position, sid, version in result}


def _device_key(event: Event) -> tuple[str | None, int | None]:
    return event.device_key if isinstance(event, DEVICE_EVENT_TYPES) else (None, None)


def _check_versions(batches: Sequence[SessionBatch], versions: dict[str, int]) -> None:
    for batch in batches:
        current = versions.get(batch.session_id, 0)
        if current != batch.expected_version:
            raise ConcurrencyConflict(batch.session_id, batch.expected_version, current)


def _by_key(payloads: Iterable[Any]) -> dict[DeviceKey, Event]:
    found = (from_dict(payload) for payload in payloads)
    return {e.device_key: e for e in found if isinstance(e, DEVICE_EVENT_TYPES)}


class SqlEventStore:
    """An :class:`cart.event_store.EventStore` on a SQLAlchemy engine for PostgreSQL or
    SQLite (InvalidCommand for another dialect).

    ``clock`` supplies ``recorded_at`` (timezone-aware; defaults to the system clock).
    The table must exist (Alembic migration, or :func:`create_schema` in tests).
    A call is one transaction: on PostgreSQL one statement reading versions and known
    device keys (under the advisory lock) and one INSERT of every row, whatever the
    number of sessions (:meth:`append_many`); SQLite adds one read.
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = utc_now) -> None:
        if engine.dialect.name not in _INSERT_ROWS:
            raise InvalidCommand(f"no cart event store for {engine.dialect.name!r} databases")
        self._engine = engine
        self._clock = clock

    def append(
        self, session_id: str, events: Sequence[Event], *, expected_version: int
    ) -> list[StoredEvent]:
        """See :meth:`cart.event_store.EventStore.append` (same errors, same atomicity)."""
        check_batch(session_id, events, expected_version)
        try:
            with self._engine.begin() as conn:
                versions, _ = self._heads(conn, [session_id], [])
                _check_versions([SessionBatch(session_id, events, expected_version)], versions)
                return self._insert(conn, [(session_id, expected_version, events)])[0]
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
        """See :meth:`cart.event_store.EventStore.append_batch` and :meth:`append_many`."""
        return self.append_many([SessionBatch(session_id, events, expected_version)])[0]

    def append_many(self, batches: Sequence[SessionBatch]) -> list[AppendResult]:
        """See :meth:`cart.event_store.EventStore.append_many`: one transaction and, on
        PostgreSQL, two statements whatever the number of sessions and events.

        Versions and known device keys are read in the same transaction; a concurrent
        writer that lands first makes the insert fail on a unique constraint, reported
        as ConcurrencyConflict (``actual_version`` None) so the caller retries.
        """
        check_many(batches)
        if not batches:
            return []
        devices = [e for b in batches for e in device_events(b.events)]
        try:
            with self._engine.begin() as conn:
                versions, known = self._heads(conn, [b.session_id for b in batches], devices)
                _check_versions(batches, versions)
                split = split_many(batches, known)
                plan = [(b.session_id, b.expected_version, keep)
                        for b, (keep, _) in zip(batches, split, strict=True)]
                stored = self._insert(conn, plan)
        except sa.exc.IntegrityError as exc:
            first = batches[0]
            raise ConcurrencyConflict(first.session_id, first.expected_version, None) from exc
        return [AppendResult(rows, dups) for rows, (_, dups) in zip(stored, split, strict=True)]

    def _heads(
        self, conn: sa.Connection, session_ids: list[str], devices: list[DeviceEvent]
    ) -> tuple[dict[str, int], dict[DeviceKey, Event]]:
        """(current version per session with events, stored event per known device key).

        On PostgreSQL one round trip that also takes the advisory lock. Its snapshot
        may predate the lock; UNIQUE(session_id, version) and UNIQUE(device_id,
        device_seq) still refuse a stale writer, and the caller reports that as
        ConcurrencyConflict.
        """
        if conn.dialect.name == "postgresql":
            row = conn.execute(_PG_HEADS, {
                "key": _ADVISORY_LOCK_KEY, "sessions": _dumps(session_ids),
                "devices": _dumps([e.device_key for e in devices]),
            }).one()
            return dict(row[1] or {}), _by_key(row[2] or [])
        found = conn.execute(_SQLITE_VERSIONS, {"sessions": _dumps(session_ids)})
        current = {sid: int(v) for sid, v in found if v is not None}
        if not devices:
            return current, {}
        keys = _dumps([e.device_key for e in devices])
        payloads = conn.execute(_SQLITE_KNOWN, {"devices": keys}).scalars()
        return current, _by_key(json.loads(payload) for payload in payloads)

    @staticmethod
    def _known_query(devices: list[DeviceEvent]) -> sa.Select[Any]:
        key = sa.tuple_(cart_events.c.device_id, cart_events.c.device_seq)
        return sa.select(cart_events.c.payload).where(key.in_([e.device_key for e in devices]))

    def _insert(
        self, conn: sa.Connection, plan: Sequence[tuple[str, int, Sequence[Event]]]
    ) -> list[list[StoredEvent]]:
        """Store each (session id, current version, events) of ``plan`` with versions
        after the current one, in one statement; returns the stored events per entry."""
        recorded_at = check_recorded_at(self._clock())
        entries = [(sid, version, event) for sid, current, events in plan
                   for version, event in enumerate(events, current + 1)]
        if not entries:
            return [[] for _ in plan]
        positions = _insert_rows(conn, entries, recorded_at)
        return [
            [StoredEvent(sid, v, positions[sid, v], e, recorded_at)
             for v, e in enumerate(events, current + 1)]
            for sid, current, events in plan
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
        """See :meth:`cart.event_store.EventStore.load` (one statement, built once)."""
        with self._engine.connect() as conn:
            rows = conn.execute(_LOAD, {"session_id": session_id}).mappings()
            return [self._stored(row) for row in rows]

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
