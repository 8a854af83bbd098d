"""Seeded plate weight streams generated from scripted (ground-truth) shelf events.

Raw load-cell streams of the AiFi store were not published, so the replay synthesises them:
Gaussian sensor noise, a slow linear drift per plate, package-to-package unit weight spread,
a product spanning several plates splitting its weight among them at random, a hand pressing
on the plates while it picks or puts back, hands resting on shelves (a transient weight that
returns, leaving the shelf settled for ``settle_s`` before the stream ends), and events
close together in time as the annotations have them (1 s resolution, jittered within the
second). Pure: all randomness comes from the given generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from cart.shelf.inference import ShelfAction
from cart.shelf.planogram import Planogram, ShelfId
from cart.shelf.weights import FloatArray, ShelfWeights


@dataclass(frozen=True)
class ScriptedEvent:
    """A pick or put-back to render: ``items`` (gtin, quantity) plus ``unidentified`` units of
    items not in the planogram (their weight is drawn from ``unknown_weight_g``)."""

    time: datetime
    shelf: ShelfId
    plates: tuple[int, ...]
    action: ShelfAction
    items: tuple[tuple[str, int], ...]
    unidentified: int = 0


@dataclass(frozen=True)
class SimulationParams:
    """Sensor and shopper model (grams, seconds, hertz); see the module docstring."""

    sample_rate_hz: float = 20.0
    noise_g: float = 2.0
    drift_g_per_min: float = 3.0
    unit_weight_cv: float = 0.005
    touch_s: tuple[float, float] = (0.8, 2.0)
    touch_force_g: tuple[float, float] = (50.0, 400.0)
    resting_hands_per_shelf: float = 0.5
    resting_s: tuple[float, float] = (1.0, 4.0)
    resting_g: tuple[float, float] = (300.0, 1500.0)
    distractor_shelves: int = 2
    lead_s: float = 5.0
    tail_s: float = 8.0
    settle_s: float = 2.0
    unknown_weight_g: tuple[float, float] = (30.0, 600.0)


def simulate_trip(
    events: Sequence[ScriptedEvent],
    planogram: Planogram,
    rng: np.random.Generator,
    params: SimulationParams | None = None,
) -> list[ShelfWeights]:
    """Weight arrays of every shelf touched by ``events`` plus a few untouched shelves.

    Plates an event names that the shelf does not have are ignored (no sensor sees them).
    """
    p = params or SimulationParams()
    if not events:
        start = datetime(2020, 1, 1, tzinfo=UTC)
    else:
        start = min(e.time for e in events) - timedelta(seconds=p.lead_s)
    offsets = {id(e): (e.time - start).total_seconds() + rng.uniform(0.0, 0.9) for e in events}
    end = max(offsets.values(), default=p.lead_s) + p.touch_s[1] + p.tail_s
    times = np.arange(0.0, end, 1.0 / p.sample_rate_hz)
    touched = sorted({e.shelf for e in events})
    others = [s for s in planogram.shelves() if s not in touched]
    picked = rng.choice(len(others), size=min(p.distractor_shelves, len(others)), replace=False)
    shelves = sorted(touched + [others[i] for i in picked.tolist()])
    out = []
    for shelf in shelves:
        plates = tuple(range(1, planogram.plates_per_shelf[shelf] + 1))
        grams = _background(times, len(plates), rng, p)
        for event in (e for e in events if e.shelf == shelf):
            _render(grams, times, offsets[id(event)], event, planogram, rng, p)
        for _ in range(int(rng.poisson(p.resting_hands_per_shelf))):
            _resting_hand(grams, times, rng, p)
        out.append(ShelfWeights(shelf, plates, start, times, grams))
    return out


def _background(
    times: FloatArray, n_plates: int, rng: np.random.Generator, p: SimulationParams
) -> FloatArray:
    stock = rng.uniform(200.0, 3000.0, size=n_plates)
    slope = rng.normal(0.0, p.drift_g_per_min / 60.0, size=n_plates)
    noise = rng.normal(0.0, p.noise_g, size=(times.shape[0], n_plates))
    grams: FloatArray = stock[None, :] + times[:, None] * slope[None, :] + noise
    return grams


def _unit_weights(
    event: ScriptedEvent, planogram: Planogram, rng: np.random.Generator, p: SimulationParams
) -> list[tuple[float, tuple[int, ...]]]:
    """(grams, plates it rests on) per unit of the event."""
    units: list[tuple[float, tuple[int, ...]]] = []
    for gtin, quantity in event.items:
        product = planogram.products[gtin]
        # the unit rests on the event's plates that carry its facing (all of them if none do).
        own = (
            tuple(q for q in event.plates if gtin in planogram.products_on(event.shelf, (q,)))
            or event.plates
        )
        for _ in range(quantity):
            nominal = product.unit_weight_g or rng.uniform(*p.unknown_weight_g)
            units.append((nominal * (1.0 + rng.normal(0.0, p.unit_weight_cv)), own))
    for _ in range(event.unidentified):
        units.append((rng.uniform(*p.unknown_weight_g), event.plates))
    return units


def _render(
    grams: FloatArray,
    times: FloatArray,
    t0: float,
    event: ScriptedEvent,
    planogram: Planogram,
    rng: np.random.Generator,
    p: SimulationParams,
) -> None:
    n_plates = grams.shape[1]
    cols = [q - 1 for q in event.plates if 1 <= q <= n_plates]
    if not cols:
        return
    duration = rng.uniform(*p.touch_s)
    t1 = t0 + duration
    sign = -1.0 if event.action is ShelfAction.PICK else 1.0
    for weight, plates in _unit_weights(event, planogram, rng, p):
        own = [q - 1 for q in plates if 1 <= q <= n_plates] or cols
        share = rng.dirichlet(np.ones(len(own)))
        # the unit leaves (or arrives) at a random moment while the hand is on the shelf.
        moment = rng.uniform(t0, t1)
        mask = times >= moment
        grams[np.ix_(mask, np.asarray(own))] += sign * weight * share[None, :]
    touch = (times >= t0) & (times < t1)
    force = rng.uniform(*p.touch_force_g)
    phase = (times[touch] - t0) / duration
    profile = force * np.sin(np.pi * phase) + rng.normal(0.0, 0.15 * force, size=phase.shape)
    share = rng.dirichlet(np.ones(len(cols)))
    grams[np.ix_(touch, np.asarray(cols))] += profile[:, None] * share[None, :]


def _resting_hand(
    grams: FloatArray, times: FloatArray, rng: np.random.Generator, p: SimulationParams
) -> None:
    n_plates = grams.shape[1]
    width = int(rng.integers(1, 4))
    first = int(rng.integers(0, max(1, n_plates - width + 1)))
    cols = list(range(first, min(n_plates, first + width)))
    duration = rng.uniform(*p.resting_s)
    # the hand leaves at least settle_s before the stream ends (a recording does not stop
    # while a hand still rests on a shelf).
    t0 = rng.uniform(0.0, max(0.0, float(times[-1]) - duration - p.settle_s))
    mask = (times >= t0) & (times < t0 + duration)
    weight = rng.uniform(*p.resting_g)
    tremor = rng.normal(0.0, 0.03 * weight, size=int(mask.sum()))
    share = rng.dirichlet(np.ones(len(cols)))
    grams[np.ix_(mask, np.asarray(cols))] += (weight + tremor)[:, None] * share[None, :]
