"""A seeded network that duplicates and reorders messages, as QoS 1 MQTT may.

It never drops a message (drops are a later issue): every message sent is
delivered at least once, so a consumer that is idempotent on
``(device_id, device_seq)`` and insensitive to order must end up in the same
state as with a perfect network.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery(Generic[T]):
    """What a :class:`LossyNetwork` delivered, with the faults it injected.

    ``duplicates`` is the number of extra copies delivered; ``reorders`` is the
    number of deliveries that arrived after a message sent later than them.
    """

    messages: tuple[T, ...]
    duplicates: int
    reorders: int


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value}")


class LossyNetwork:
    """Duplicates and displaces messages, deterministically for a seed.

    Each message sent is duplicated with probability ``duplicate_rate`` (the
    copy, delivered right after the original, is the very same object, hence the
    same bytes). Each delivery (copies included) is then, with probability
    ``reorder_rate``, held back until exactly 1 to ``max_delay_positions``
    messages sent after it have overtaken it. Held-back messages still waiting when the input
    ends are delivered last, never overtaken; so ``Delivery.reorders`` is
    ``reorder_rate`` times the number of deliveries, up to sampling noise and
    those few at the end.
    """

    def __init__(
        self,
        seed: int,
        duplicate_rate: float,
        reorder_rate: float,
        max_delay_positions: int = 3,
    ) -> None:
        """Raise ``ValueError`` if a rate is outside [0, 1] or ``max_delay_positions < 1``."""
        _check_rate("duplicate_rate", duplicate_rate)
        _check_rate("reorder_rate", reorder_rate)
        if max_delay_positions < 1:
            raise ValueError(f"max_delay_positions must be >= 1, got {max_delay_positions}")
        self._rng = random.Random(seed)
        self._duplicate_rate = duplicate_rate
        self._reorder_rate = reorder_rate
        self._max_delay = max_delay_positions

    def _reorder(self, stream: list[tuple[int, T]]) -> list[tuple[int, T]]:
        """Hold deliveries back until 1..max_delay later-sent messages have overtaken them."""
        arrived: list[tuple[int, T]] = []
        held: list[tuple[int, int, T]] = []  # (overtakes still to wait for, sent index, message)
        for sent_index, message in stream:
            if self._rng.random() < self._reorder_rate:
                held.append((self._rng.randint(1, self._max_delay), sent_index, message))
                continue
            ready = [(sent_index, message)]
            while ready:
                # Lowest sent index first: released messages must not overtake each other.
                ready.sort(key=lambda entry: entry[0])
                overtaker = ready.pop(0)
                arrived.append(overtaker)
                waiting: list[tuple[int, int, T]] = []
                for wait, s, m in held:
                    # Only a message sent later overtakes; a copy of itself does not.
                    wait -= s < overtaker[0]
                    if wait <= 0:
                        ready.append((s, m))
                    else:
                        waiting.append((wait, s, m))
                held = waiting
        arrived.extend((s, m) for _, s, m in held)
        return arrived

    def deliver(self, messages: Sequence[T]) -> Delivery[T]:
        """Return ``messages`` (given in send order) in the order they arrive.

        Successive calls continue the same random stream, so one network
        instance models one link over time.
        """
        stream: list[tuple[int, T]] = []
        for sent_index, message in enumerate(messages):
            stream.append((sent_index, message))
            if self._rng.random() < self._duplicate_rate:
                stream.append((sent_index, message))
        duplicates = len(stream) - len(messages)

        arrived = self._reorder(stream)
        return Delivery(
            messages=tuple(message for _, message in arrived),
            duplicates=duplicates,
            reorders=_count_overtaken(sent_index for sent_index, _ in arrived),
        )


def _count_overtaken(sent_indices: Iterable[int]) -> int:
    """Count deliveries preceded by a delivery of a message sent after them."""
    latest_sent = -1
    overtaken = 0
    for sent_index in sent_indices:
        if latest_sent > sent_index:
            overtaken += 1
        latest_sent = max(latest_sent, sent_index)
    return overtaken
