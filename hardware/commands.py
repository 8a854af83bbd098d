"""Versioned wire schema of the commands the gateway sends back to devices.

Commands travel on ``stores/{store}/devices/{device}/commands`` (QoS 1) inside a
signed frame (:mod:`hardware.auth`) made with the target device's key, so a device
believes only its own gateway. Each carries ``command_id`` (unique; a device that
sees one twice ignores the copy), the target ``device_id``, ``issued_at`` (UTC) and
``in_reply_to``: the ``device_seq`` of the message it answers, or None.
Parsing is strict, as for :mod:`hardware.messages`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hardware.errors import InvalidMessage
from hardware.messages import (
    MAX_DEVICE_SEQ,
    SCHEMA_VERSION,
    Identifier,
    UtcDatetime,
    validation_reason,
)

MAX_TEXT_CHARS = 200
"""Longest text a device display is asked to show."""


class _CommandEnvelope(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    device_id: Identifier
    issued_at: UtcDatetime
    in_reply_to: int | None = Field(default=None, ge=0, le=MAX_DEVICE_SEQ)


class OpenGateCommand(_CommandEnvelope):
    """Open the barrier of ``gate_id`` for ``session_id`` (the shopper was admitted)."""

    type: Literal["open_gate"] = "open_gate"
    gate_id: Identifier
    session_id: Identifier


class ShowMessageCommand(_CommandEnvelope):
    """Show ``text`` (1-200 characters) on the device's display at ``level``."""

    type: Literal["show_message"] = "show_message"
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    level: Literal["info", "warning", "error"] = "info"


class RefuseCommand(_CommandEnvelope):
    """The message ``in_reply_to`` was refused: ``reason_code`` (machine) and ``reason`` (human)."""

    type: Literal["refuse"] = "refuse"
    reason_code: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]
    reason: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


Command = OpenGateCommand | ShowMessageCommand | RefuseCommand

_ADAPTER: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="type")])


def parse_command(raw: bytes) -> Command:
    """Decode one command from UTF-8 JSON bytes.

    Raises :class:`~hardware.errors.InvalidMessage` (with the reason) on malformed JSON,
    an unknown ``type`` or ``schema_version``, or a missing, extra or mistyped field.
    """
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidMessage(validation_reason(exc)) from exc


def shorten(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT_CHARS` characters (with an ellipsis when cut)."""
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"
