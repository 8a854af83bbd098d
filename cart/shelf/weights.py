"""Plate weight readings and the per-shelf weight arrays the change detector works on."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from cart.shelf.errors import ShelfDataError
from cart.shelf.planogram import PlateId, ShelfId

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PlateReading:
    """One load-cell reading: ``plate``, weight on it in ``grams``, tz-aware ``sensor_time``."""

    plate: PlateId
    grams: float
    sensor_time: datetime

    def __post_init__(self) -> None:
        if not math.isfinite(self.grams):
            raise ShelfDataError(f"reading of {self.plate} is not a finite number of grams")
        if self.sensor_time.tzinfo is None:
            raise ShelfDataError("sensor_time must be timezone-aware")


@dataclass(frozen=True)
class ShelfWeights:
    """Synchronous weight samples of the plates of one shelf.

    ``start`` is the tz-aware time of offset 0. ``times_s`` has shape (N,), float64 seconds
    since ``start``, strictly increasing. ``grams`` has shape (N, P), float64 grams, column j
    being plate ``plates[j]`` (plate indices, strictly increasing).
    """

    shelf: ShelfId
    plates: tuple[int, ...]
    start: datetime
    times_s: FloatArray
    grams: FloatArray

    def __post_init__(self) -> None:
        n = self.times_s.shape[0]
        if self.times_s.ndim != 1 or self.grams.shape != (n, len(self.plates)):
            raise ShelfDataError(
                f"shelf {self.shelf}: grams shape {self.grams.shape} does not match "
                f"{n} times x {len(self.plates)} plates"
            )
        if any(b <= a for a, b in zip(self.plates, self.plates[1:], strict=False)):
            raise ShelfDataError(f"shelf {self.shelf}: plate indices must increase")
        if n > 1 and not bool(np.all(np.diff(self.times_s) > 0)):
            raise ShelfDataError(f"shelf {self.shelf}: sample times must increase")
        if not bool(np.all(np.isfinite(self.grams))):
            raise ShelfDataError(f"shelf {self.shelf}: weights must be finite")
        if self.start.tzinfo is None:
            raise ShelfDataError("start must be timezone-aware")

    def time_at(self, offset_s: float) -> datetime:
        """The tz-aware time ``offset_s`` seconds after ``start``."""
        return self.start + timedelta(seconds=offset_s)


def readings_to_shelves(readings: Iterable[PlateReading]) -> list[ShelfWeights]:
    """Group readings by shelf into :class:`ShelfWeights`, one row per distinct sensor time.

    A plate without a reading at some time keeps its previous value (its first value before
    its first reading): load cells report on change or at their own pace. Raises
    :class:`ShelfDataError` for an empty input.
    """
    by_shelf: dict[ShelfId, list[PlateReading]] = {}
    for reading in readings:
        by_shelf.setdefault(reading.plate.shelf, []).append(reading)
    if not by_shelf:
        raise ShelfDataError("no plate readings")
    start = min(r.sensor_time for rs in by_shelf.values() for r in rs)
    return [_one_shelf(shelf, by_shelf[shelf], start) for shelf in sorted(by_shelf)]


def _one_shelf(shelf: ShelfId, readings: list[PlateReading], start: datetime) -> ShelfWeights:
    readings = sorted(readings, key=lambda r: (r.sensor_time, r.plate))
    plates = tuple(sorted({r.plate.plate for r in readings}))
    column = {plate: j for j, plate in enumerate(plates)}
    times = sorted({r.sensor_time for r in readings})
    row = {t: i for i, t in enumerate(times)}
    grams = np.full((len(times), len(plates)), np.nan)
    for r in readings:
        grams[row[r.sensor_time], column[r.plate.plate]] = r.grams
    for j in range(len(plates)):
        col = grams[:, j]
        known = np.flatnonzero(~np.isnan(col))
        # index of the latest known reading at or before each row (first one before it).
        idx = known[np.clip(np.searchsorted(known, np.arange(len(col)), side="right") - 1, 0, None)]
        grams[:, j] = col[idx]
    offsets = np.array([(t - start).total_seconds() for t in times], dtype=np.float64)
    return ShelfWeights(shelf, plates, start, offsets, grams)
