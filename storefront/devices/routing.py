"""Route authenticated device messages into the service layer the HTTP API uses.

Item events go to ``ItemIngest.record`` (idempotent on device id + sequence), entry
palm captures to ``GateService.enter_by_palm``; gate events, plate readings and
heartbeats are recorded in the inbox. Each route returns the commands to send back.

A (device, seq) names one message: the same content again is a duplicate (acknowledged,
answered as the first time), other content under the same (device, seq) is refused
``conflicting_duplicate``. Item events are compared by the cart event log; the others by
their inbox row: gate events, plate readings and heartbeats store their body, palm
captures only the SHA-256 of their canonical body (:func:`capture_digest`, image
included), so a reused sequence number can never replay an earlier shopper's
``open_gate`` and the inbox keeps no palm image.

:func:`check_not_ahead` is the bound on device clocks shared by both device paths: a
device time more than ``Settings.device_max_future_skew_s`` ahead of the server clock
is refused ``device_time_in_future`` (by the gateway over MQTT, by the item-event route
over HTTP); late times are not bounded by it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from cart.errors import DuplicateDeviceEvent, InvalidCommand, SessionClosed
from hardware.auth import canonical_json
from hardware.commands import (
    Command,
    OpenGateCommand,
    RefuseCommand,
    ShowMessageCommand,
    shorten,
)
from hardware.messages import ItemEventMessage, Message, PalmCaptureMessage
from identity.errors import IdentityError
from storefront.clock import Clock
from storefront.devices.journal import GatewayJournal
from storefront.errors import InvalidInput, NotFound, UnknownProduct
from storefront.gates import GateService
from storefront.sessions import ItemIngest

ALTERNATIVES = "Please try again, scan the app's QR code, or ask staff for help."
DEVICE_TIME_IN_FUTURE: Final = "device_time_in_future"


class DeviceTimeInFuture(InvalidInput):
    """A device time too far ahead of the server clock (HTTP 422; refused over MQTT)."""

    code = DEVICE_TIME_IN_FUTURE


def check_not_ahead(ahead: timedelta, *, max_ahead: timedelta, what: str) -> None:
    """Refuse a device time ``ahead`` of the server clock by more than ``max_ahead``.

    ``ahead`` is the device time minus the server clock (negative: a late time, always
    accepted); ``what`` names the time in the reason (``device_time``, ``sensor_time``).
    Raises :class:`DeviceTimeInFuture` with a reason giving both, in seconds.
    """
    if ahead > max_ahead:
        raise DeviceTimeInFuture(
            f"{what} is {ahead.total_seconds():.3f} s ahead of the server clock (at most "
            f"{max_ahead.total_seconds():g} s allowed): check the device's clock")


def refusal(message: Message, code: str, reason: str, issued_at: datetime) -> RefuseCommand:
    """The command telling a device that ``message`` was refused (``reason`` shortened to
    what a device display shows); ``issued_at`` is tz-aware UTC."""
    return RefuseCommand(command_id=uuid.uuid4().hex, device_id=message.device_id,
                         issued_at=issued_at, in_reply_to=message.device_seq,
                         reason_code=code, reason=shorten(reason))


@dataclass(frozen=True)
class RouteResult:
    """What became of one message.

    ``outcome``: ``applied`` (stored), ``duplicate`` (already stored: acknowledged,
    not counted again), ``rejected`` (the service refused it; ``reason_code`` says why)
    or ``recorded`` (kept in the inbox). ``detail`` is the service's answer (a
    ``StoredEvent`` or ``EntryDecision``), for observers such as the demo.
    ``audit_reason``: for a refused message, the reason the gateway writes to
    ``device_audit``; None otherwise, and for an entry the gate declined (not
    identified, ambiguous, entry refused), which is a decision on a valid message,
    recorded in the audit log (identification) and the inbox (outcome and reply).
    """

    outcome: str
    commands: list[Command] = field(default_factory=list)
    reason_code: str | None = None
    detail: Any = None
    audit_reason: str | None = None


class Router:
    """Turns one validated message into service calls and reply commands."""

    def __init__(self, *, ingest: ItemIngest, gates: GateService, journal: GatewayJournal,
                 clock: Clock) -> None:
        self._ingest = ingest
        self._gates = gates
        self._journal = journal
        self._clock = clock

    def route(self, message: Message) -> RouteResult:
        """Dispatch on the message type. Transient database errors propagate (retry)."""
        if isinstance(message, ItemEventMessage):
            return self._item(message)
        if isinstance(message, PalmCaptureMessage):
            return self._capture(message)
        body = message.model_dump(mode="json")
        earlier = self._journal.claim(device_id=message.device_id, device_seq=message.device_seq,
                                      type_=message.type, device_time=message.device_time,
                                      body=body)
        if earlier is not None:
            if earlier.type != message.type or earlier.body != body:
                return self._conflict(message, earlier.type)
            return RouteResult("duplicate")
        self._journal.settle(device_id=message.device_id, device_seq=message.device_seq,
                             outcome="recorded", reply=[])
        return RouteResult("recorded")

    def _refuse(self, message: Message, code: str, reason: str) -> RouteResult:
        """A refused message: the ``refuse`` command, and ``reason`` to audit."""
        return RouteResult("rejected", [refusal(message, code, reason, self._clock())], code,
                           audit_reason=reason)

    def _conflict(self, m: Message, earlier_type: str) -> RouteResult:
        """A sequence number this device already used for another message."""
        return self._refuse(m, "conflicting_duplicate",
                            f"device {m.device_id} already sent seq {m.device_seq} "
                            f"(a {earlier_type} message) with other content")

    def _item(self, m: ItemEventMessage) -> RouteResult:
        try:
            stored = self._ingest.record(
                session_id=m.session_id, kind=m.kind, product_code=m.product_code,
                quantity=m.quantity, device_id=m.device_id, device_seq=m.device_seq,
                sensor_time=m.device_time, confidence=m.confidence)
        except DuplicateDeviceEvent as exc:
            if exc.same_payload:
                return RouteResult("duplicate")
            return self._refuse(m, "conflicting_duplicate", exc.reason)
        except (UnknownProduct, NotFound) as exc:
            return self._refuse(m, exc.code, exc.reason)
        except (SessionClosed, InvalidCommand) as exc:
            return self._refuse(m, exc.code, exc.reason)
        return RouteResult("applied", detail=stored)

    def _capture(self, m: PalmCaptureMessage) -> RouteResult:
        """Entry captures open a session at most once per (device, seq), even if redelivered."""
        if m.direction != "entry":
            return self._refuse(m, "exit_by_palm_unsupported",
                                "exit gates close sessions through the exit API")
        digest = {"sha256": capture_digest(m)}
        earlier = self._journal.claim(device_id=m.device_id, device_seq=m.device_seq,
                                      type_=m.type, device_time=m.device_time, body=digest)
        if earlier is not None:
            # A row without a digest (written before digests were kept) proves nothing
            # about the content: refused, never answered with its stored open_gate.
            if earlier.type != m.type or earlier.body != digest:
                return self._conflict(m, earlier.type)
            return RouteResult("duplicate", _replay(earlier.reply))
        try:
            decision = self._gates.enter_by_palm(image=m.image, actor=f"device:{m.device_id}")
        except IdentityError as exc:
            result = self._refuse(m, "unusable_capture", str(exc))
        except Exception:  # e.g. a transient database error: the gateway retries it, so
            # give the claim back, or the retry would find it and answer nothing
            self._journal.release(device_id=m.device_id, device_seq=m.device_seq)
            raise
        else:
            if decision.admitted and decision.session_id is not None:
                commands: list[Command] = [
                    OpenGateCommand(command_id=uuid.uuid4().hex, device_id=m.device_id,
                                    issued_at=self._clock(), in_reply_to=m.device_seq,
                                    gate_id=m.gate_id, session_id=decision.session_id),
                    self._show(m, "Welcome", "info")]
                result = RouteResult("applied", commands, detail=decision)
            else:
                refused = refusal(m, decision.outcome, decision.reason, self._clock())
                result = RouteResult("rejected", [refused,
                                                  self._show(m, ALTERNATIVES, "warning")],
                                     decision.outcome, decision)
        self._journal.settle(device_id=m.device_id, device_seq=m.device_seq,
                             outcome=result.outcome,
                             reply=[c.model_dump(mode="json") for c in result.commands])
        return result

    def _show(self, m: Message, text: str, level: str) -> ShowMessageCommand:
        return ShowMessageCommand(command_id=uuid.uuid4().hex, device_id=m.device_id,
                                  issued_at=self._clock(), in_reply_to=m.device_seq,
                                  text=text, level=level)  # type: ignore[arg-type]


def capture_digest(m: PalmCaptureMessage) -> str:
    """SHA-256 (hex) of a capture's canonical JSON body, image included: what its inbox
    row keeps to tell a redelivery (same digest) from a reused sequence number."""
    return hashlib.sha256(canonical_json(m.model_dump(mode="json"))).hexdigest()


def _replay(reply: list[dict[str, Any]] | None) -> list[Command]:
    """The commands stored for a capture, to answer its redelivery identically."""
    from hardware.commands import parse_command

    return [parse_command(canonical_json(c)) for c in reply or []]
