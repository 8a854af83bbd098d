"""Hand-made plate weight streams for the shelf-inference tests (20 Hz, seeded noise)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from cart.shelf.planogram import ShelfId
from cart.shelf.weights import ShelfWeights

SHELF = ShelfId(1, 1)
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RATE = 20.0  # samples per second


def plate_stream(
    steps: list[tuple[float, dict[int, float]]],
    bumps: Sequence[tuple[float, float, dict[int, float]]] = (),
    seconds: float = 20.0,
    seed: int = 0,
    noise_g: float = 2.0,
    drift_g_per_min: float | None = None,
) -> ShelfWeights:
    """9 plates of shelf ``SHELF`` with 1 kg stock each, Gaussian noise of ``noise_g`` grams.

    ``steps``: (time s, {plate: grams}) lasting changes, a hand touching the plates
    (+50..300 g) for 1 s from that time; ``bumps``: (start s, end s, {plate: grams})
    temporary loads; ``drift_g_per_min``: when given, each plate drifts linearly at a rate
    drawn with that sigma (g/min).
    """
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, seconds, 1.0 / RATE)
    grams = np.full((times.size, 9), 1000.0) + rng.normal(0.0, noise_g, (times.size, 9))
    if drift_g_per_min is not None:
        grams += times[:, None] * rng.normal(0.0, drift_g_per_min / 60.0, 9)[None, :]
    for t, change in steps:
        for plate, g in change.items():
            grams[times >= t + 0.5, plate - 1] += g
            touch = (times >= t) & (times < t + 1.0)
            grams[touch, plate - 1] += rng.uniform(50, 300, touch.sum())
    for t0, t1, load in bumps:
        for plate, g in load.items():
            grams[(times >= t0) & (times < t1), plate - 1] += g
    return ShelfWeights(SHELF, tuple(range(1, 10)), START, times, grams)
