"""The gateway's durable records: the audit log of refused messages and the inbox.

Both are written before the message is acknowledged to the broker, so a refusal is
never lost and a redelivered gate capture is answered from the inbox, not re-run.
:meth:`GatewayJournal.prune` deletes rows past their retention period, in short
batches (``storefront devices prune``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.devices.models import DeviceAudit, DeviceMessage
from storefront.errors import InvalidInput

PRUNE_BATCH = 500
"""Rows deleted per transaction by :meth:`GatewayJournal.prune`."""
MIN_RETENTION = timedelta(days=1)
"""The youngest cut :meth:`GatewayJournal.prune` accepts, before the journal's clock."""


@dataclass(frozen=True)
class PruneReport:
    """What one :meth:`GatewayJournal.prune` did.

    ``messages_deleted`` / ``audit_deleted``: rows deleted from ``device_messages`` /
    ``device_audit``; ``claimed_kept``: inbox rows older than the inbox cut kept because
    they are still ``claimed`` and not older than the audit cut (see ``prune``).
    """

    messages_before: datetime
    audit_before: datetime
    messages_deleted: int
    audit_deleted: int
    claimed_kept: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (times as ISO 8601 UTC)."""
        return {"device_messages_deleted": self.messages_deleted,
                "device_audit_deleted": self.audit_deleted,
                "claimed_kept": self.claimed_kept,
                "messages_before": self.messages_before.isoformat(),
                "audit_before": self.audit_before.isoformat()}


class GatewayJournal:
    """Writes ``device_audit`` and ``device_messages`` rows."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def audit(self, *, topic: str, reason_code: str, reason: str, payload_bytes: int,
              store_id: str | None = None, device_id: str | None = None) -> None:
        """Record one refused message (topic and ids are cut to their column sizes)."""
        with self._sessions.begin() as db:
            db.add(DeviceAudit(at=self._clock(), store_id=(store_id or None) and store_id[:64],
                               device_id=(device_id or None) and device_id[:64],
                               topic=topic[:256], reason_code=reason_code[:64],
                               reason=reason[:500], payload_bytes=payload_bytes))

    def audit_counts(self) -> dict[str, int]:
        """Refused messages per reason code."""
        with self._sessions() as db:
            rows = db.execute(sa.select(DeviceAudit.reason_code, sa.func.count())
                              .group_by(DeviceAudit.reason_code)).all()
        return {str(code): int(count) for code, count in rows}

    def claim(self, *, device_id: str, device_seq: int, type_: str, device_time: datetime,
              body: dict[str, Any] | None) -> DeviceMessage | None:
        """Record a message as being handled; returns the earlier row if it was seen before."""
        with self._sessions.begin() as db:
            earlier = db.get(DeviceMessage, (device_id, device_seq))
            if earlier is not None:
                return earlier
            db.add(DeviceMessage(device_id=device_id, device_seq=device_seq, type=type_,
                                 received_at=self._clock(), device_time=device_time,
                                 outcome="claimed", body=body))
        return None

    def release(self, *, device_id: str, device_seq: int) -> None:
        """Forget a claim whose handling failed before it was settled, so a retry of the
        same message handles it again (instead of answering it as a duplicate with
        nothing to replay)."""
        with self._sessions.begin() as db:
            db.execute(sa.delete(DeviceMessage)
                       .where(DeviceMessage.device_id == device_id,
                              DeviceMessage.device_seq == device_seq,
                              DeviceMessage.outcome == "claimed"))

    def settle(self, *, device_id: str, device_seq: int, outcome: str,
               reply: list[dict[str, Any]]) -> None:
        """Store the outcome and the commands sent in reply."""
        with self._sessions.begin() as db:
            db.execute(sa.update(DeviceMessage)
                       .where(DeviceMessage.device_id == device_id,
                              DeviceMessage.device_seq == device_seq)
                       .values(outcome=outcome, reply=reply))

    def prune_older_than(self, *, messages_days: int, audit_days: int,
                         batch_size: int = PRUNE_BATCH) -> PruneReport:
        """:meth:`prune` with cuts ``messages_days`` / ``audit_days`` days (each >= 1)
        before the journal's clock. Raises InvalidInput for a period below one day."""
        for name, days in (("messages_days", messages_days), ("audit_days", audit_days)):
            if days < 1:
                raise InvalidInput(f"{name} must be at least 1 (got {days})")
        now = self._clock()
        return self.prune(messages_before=now - timedelta(days=messages_days),
                          audit_before=now - timedelta(days=audit_days), batch_size=batch_size)

    def prune(self, *, messages_before: datetime, audit_before: datetime,
              batch_size: int = PRUNE_BATCH) -> PruneReport:
        """Delete inbox rows received before ``messages_before`` and audit rows written
        before ``audit_before``, at most ``batch_size`` rows per transaction, so a large
        table is never behind one long write lock and the gateway keeps writing between
        batches. Idempotent: a second run with the same cuts deletes nothing.

        Rows are walked once in primary-key order (keyset pagination), each batch
        deleted by key range with the age test repeated, so a row the gateway writes
        meanwhile (received now, far younger than any cut) is never touched.

        An inbox row still ``claimed`` (handling started, outcome not yet settled) is
        deleted only when it is also older than ``audit_before``. A claim in flight is
        seconds old, younger than any accepted cut; an older one was stranded by a
        gateway killed between claim and settle, and it may stand for a gate capture that
        opened a session whose reply was never stored. It still makes a redelivery of
        that capture a duplicate rather than a second session, and it is evidence of an
        anomaly to investigate, so it is kept as long as refusals are (the audit period).

        Raises InvalidInput for a naive cut, a ``batch_size`` below 1, or a cut less than
        :data:`MIN_RETENTION` before the clock (which could delete rows that answer
        redeliveries still arriving).
        """
        messages_before = self._cut("messages_before", messages_before)
        audit_before = self._cut("audit_before", audit_before)
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be at least 1 (got {batch_size})")
        claimed_before = min(messages_before, audit_before)
        m = DeviceMessage
        stale_message = sa.and_(m.received_at < messages_before,
                                sa.or_(m.outcome != "claimed", m.received_at < claimed_before))
        messages = self._delete_batches(m, (m.device_id, m.device_seq), stale_message,
                                        batch_size)
        audit = self._delete_batches(DeviceAudit, (DeviceAudit.id,),
                                     DeviceAudit.at < audit_before, batch_size)
        with self._sessions() as db:
            kept = db.scalar(sa.select(sa.func.count()).select_from(m).where(
                m.outcome == "claimed", m.received_at < messages_before,
                m.received_at >= claimed_before))
        return PruneReport(messages_before, audit_before, messages, audit, int(kept or 0))

    def _cut(self, name: str, cut: datetime) -> datetime:
        """``cut`` in UTC (SQLite compares the stored UTC text), refused when naive or
        younger than :data:`MIN_RETENTION` before the clock."""
        if cut.tzinfo is None:
            raise InvalidInput(f"{name} must be timezone-aware (got a naive datetime)")
        latest = self._clock() - MIN_RETENTION
        if cut > latest:
            raise InvalidInput(f"{name} {cut.isoformat()} is later than "
                               f"{latest.isoformat()} (now less {MIN_RETENTION})")
        return cut.astimezone(UTC)

    def _delete_batches(self, table: type[DeviceMessage] | type[DeviceAudit],
                        key_columns: tuple[Any, ...],
                        stale: sa.ColumnElement[bool], batch_size: int) -> int:
        """Delete the rows of ``table`` matching ``stale``, ``batch_size`` per
        transaction, walking the primary key ``key_columns`` upwards; returns the count."""
        key = sa.tuple_(*key_columns)
        after: tuple[Any, ...] | None = None
        deleted = 0
        while True:
            window = stale if after is None else sa.and_(stale, key > sa.tuple_(*after))
            with self._sessions.begin() as db:
                keys = db.execute(sa.select(*key_columns).where(window)
                                  .order_by(*key_columns).limit(batch_size)).all()
                if not keys:
                    return deleted
                last = tuple(keys[-1])
                result = db.execute(sa.delete(table).where(window, key <= sa.tuple_(*last))
                                    .execution_options(synchronize_session=False))
                deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
            if len(keys) < batch_size:
                return deleted
            after = last
