"""A seeded gate palm scanner that wraps given image bytes in capture messages."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Literal

from hardware.messages import PalmCaptureMessage

_MIN_GAP_MS = 500
_MAX_GAP_MS = 20_000


class GateSimulator:
    """One palm scanner at a gate, with its own sequence counter and clock.

    ``device_seq`` starts at 0 and increases by one per capture; ``device_time``
    advances by 0.5-20 seconds (seeded) per capture, starting after
    ``clock_start``. ``gate_id`` defaults to ``device_id`` (one scanner per gate).
    """

    def __init__(
        self,
        device_id: str,
        seed: int,
        clock_start: datetime,
        *,
        gate_id: str | None = None,
    ) -> None:
        """Raise ``ValueError`` if ``clock_start`` is naive (has no UTC offset)."""
        if clock_start.tzinfo is None or clock_start.utcoffset() is None:
            raise ValueError("clock_start must be timezone-aware")
        self.device_id = device_id
        self.gate_id = gate_id if gate_id is not None else device_id
        self._rng = random.Random(seed)
        self._clock = clock_start.astimezone(UTC)
        self._next_seq = 0

    @property
    def next_seq(self) -> int:
        """The ``device_seq`` the next capture will carry."""
        return self._next_seq

    def capture(self, image: bytes, direction: Literal["entry", "exit"]) -> PalmCaptureMessage:
        """Emit one capture of ``image`` (encoded PNG/JPEG bytes) for ``direction``.

        Raises ``ValueError`` (pydantic ``ValidationError``) if the image is empty
        or over :data:`hardware.messages.MAX_IMAGE_BYTES`, or an id is invalid;
        the sequence counter and clock are then left unchanged.
        """
        when = self._clock + timedelta(milliseconds=self._rng.randint(_MIN_GAP_MS, _MAX_GAP_MS))
        message = PalmCaptureMessage(
            device_id=self.device_id,
            device_seq=self._next_seq,
            device_time=when,
            gate_id=self.gate_id,
            direction=direction,
            image=image,
        )
        self._clock = when
        self._next_seq += 1
        return message
