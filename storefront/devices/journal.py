"""The gateway's durable records: the audit log of refused messages and the inbox.

Both are written before the message is acknowledged to the broker, so a refusal is
never lost and a redelivered gate capture is answered from the inbox, not re-run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from storefront.clock import Clock
from storefront.devices.models import DeviceAudit, DeviceMessage


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
