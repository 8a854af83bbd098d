"""A seeded smart cart that emits the item events of shopping trips.

The events of one trip always net out to the basket it was given: every
basket line is picked (sometimes in several smaller picks), and every extra
item the shopper picks "by mistake" is put back later in the same trip. So a
consumer that folds ``picked`` minus ``put_back`` per product must recover the
basket exactly, whatever duplicates or reordering the network adds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal

from hardware.messages import ItemEventMessage

MAX_PICK_QUANTITY = 999
"""Largest quantity one event can carry; bigger basket lines are split."""

_SPLIT_RATE = 0.3
_MIN_STEP_MS = 1_000
_MAX_STEP_MS = 5_000
_MIN_CONFIDENCE = 0.85


@dataclass(frozen=True)
class _Action:
    kind: Literal["picked", "put_back"]
    product_code: str
    quantity: int


class SmartCartSimulator:
    """One smart cart: a device id, a sequence counter and a clock that survive trips.

    ``device_seq`` starts at 0 and increases by one per event across all trips;
    ``device_time`` starts after ``clock_start`` and advances by 1-5 seconds per
    event. Same seed, same calls: same events.
    """

    def __init__(self, device_id: str, seed: int, clock_start: datetime) -> None:
        """Raise ``ValueError`` if ``clock_start`` is naive (has no UTC offset)."""
        if clock_start.tzinfo is None or clock_start.utcoffset() is None:
            raise ValueError("clock_start must be timezone-aware")
        self.device_id = device_id
        self._rng = random.Random(seed)
        self._clock = clock_start.astimezone(UTC)
        self._next_seq = 0

    @property
    def next_seq(self) -> int:
        """The ``device_seq`` the next event will carry."""
        return self._next_seq

    def trip(
        self,
        session_id: str,
        basket: Sequence[tuple[str, int]],
        *,
        put_back_rate: float,
        catalogue_codes: Sequence[str],
    ) -> list[ItemEventMessage]:
        """Emit, in send order, the item events of one trip ending with ``basket`` in the cart.

        ``basket`` lists ``(product_code, quantity)`` lines, quantities in units.
        For each line, with probability ``put_back_rate``, the shopper also picks
        an extra item (a code from ``catalogue_codes`` or more of the same line)
        and puts it back later in the trip.

        Raises ``ValueError`` if a quantity is < 1, ``put_back_rate`` is outside
        [0, 1], or an id or product code breaks the wire schema (pydantic's
        ``ValidationError`` is a ``ValueError``).
        """
        if not 0.0 <= put_back_rate <= 1.0:
            raise ValueError(f"put_back_rate must be within [0, 1], got {put_back_rate}")
        saved = (self._rng.getstate(), self._clock, self._next_seq)
        try:
            return self._trip(session_id, basket, put_back_rate, catalogue_codes)
        except ValueError:
            # A refused trip leaves no trace: the next trip continues the same stream.
            self._rng.setstate(saved[0])
            self._clock, self._next_seq = saved[1], saved[2]
            raise

    def _trip(
        self,
        session_id: str,
        basket: Sequence[tuple[str, int]],
        put_back_rate: float,
        catalogue_codes: Sequence[str],
    ) -> list[ItemEventMessage]:
        actions: list[_Action] = []
        for code, quantity in basket:
            if quantity < 1:
                raise ValueError(f"basket quantity of {code!r} must be >= 1, got {quantity}")
            actions.extend(_Action("picked", code, q) for q in self._split(quantity))
        self._rng.shuffle(actions)
        for code, _ in basket:
            if self._rng.random() < put_back_rate:
                self._insert_mistake(actions, code, catalogue_codes)
        return [self._emit(session_id, action) for action in actions]

    def _split(self, quantity: int) -> list[int]:
        """Split ``quantity`` into picks of 1..MAX_PICK_QUANTITY units summing to it."""
        parts: list[int] = []
        while quantity > MAX_PICK_QUANTITY:
            parts.append(MAX_PICK_QUANTITY)
            quantity -= MAX_PICK_QUANTITY
        if quantity >= 2 and self._rng.random() < _SPLIT_RATE:
            pieces = self._rng.randint(2, min(quantity, 3))
            cuts = sorted(self._rng.sample(range(1, quantity), pieces - 1))
            bounds = [0, *cuts, quantity]
            parts.extend(b - a for a, b in pairwise(bounds))
        else:
            parts.append(quantity)
        return parts

    def _insert_mistake(
        self, actions: list[_Action], line_code: str, catalogue_codes: Sequence[str]
    ) -> None:
        """Insert a pick of an extra item somewhere, and its put-back somewhere after it."""
        if catalogue_codes and self._rng.random() < 0.5:
            code = self._rng.choice(list(catalogue_codes))
        else:
            code = line_code
        quantity = self._rng.randint(1, 2)
        pick_at = self._rng.randint(0, len(actions))
        actions.insert(pick_at, _Action("picked", code, quantity))
        put_back_at = self._rng.randint(pick_at + 1, len(actions))
        actions.insert(put_back_at, _Action("put_back", code, quantity))

    def _emit(self, session_id: str, action: _Action) -> ItemEventMessage:
        self._clock += timedelta(milliseconds=self._rng.randint(_MIN_STEP_MS, _MAX_STEP_MS))
        message = ItemEventMessage(
            device_id=self.device_id,
            device_seq=self._next_seq,
            device_time=self._clock,
            kind=action.kind,
            session_id=session_id,
            product_code=action.product_code,
            quantity=action.quantity,
            confidence=round(self._rng.uniform(_MIN_CONFIDENCE, 1.0), 3),
        )
        self._next_seq += 1
        return message
