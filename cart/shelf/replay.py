"""Replay of AiFi ground-truth trips through simulated plates and the inference, scored.

Pure given the loaded :class:`~cart.shelf.aifi.AifiStore`: trip i is simulated with the
generator seeded by ``(seed, i)``, so any subset of trips reproduces the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cart.shelf.aifi import AifiStore, AifiTrip
from cart.shelf.evaluation import (
    UNIDENTIFIED,
    matched_units,
    precision_recall_f1,
    receipt,
    unit_counts,
)
from cart.shelf.explain import tolerance_g
from cart.shelf.inference import InferenceResult, infer
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram
from cart.shelf.simulate import ScriptedEvent, SimulationParams, simulate_trip


@dataclass(frozen=True)
class TripOutcome:
    """One trip: true and inferred receipts (gtin -> net quantity), review count, unit counts."""

    name: str
    truth: dict[str, int]
    inferred: dict[str, int]
    reviews: int
    matched: int
    n_inferred: int
    n_truth: int
    ambiguous_by_weight: bool = False

    @property
    def exact(self) -> bool:
        """The inferred receipt equals the true one."""
        return self.truth == self.inferred


@dataclass(frozen=True)
class ReplayReport:
    """Scores over trips (see :func:`replay`); ``outcomes`` lists every trip."""

    outcomes: tuple[TripOutcome, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, float | int]:
        """precision, recall, f1, trips_exact, trips, trips_flagged, wrong_trips_unflagged, ...

        ``trips_ambiguous_by_weight``: trips with a true unit that a weight-only system cannot
        tell from another product (see :func:`ambiguous_by_weight`);
        ``trips_unidentified_items``: trips whose true receipt holds unidentified units (no
        system can bill them); ``trips_exact_decidable``: trips_exact over the other trips.
        """
        matched = sum(o.matched for o in self.outcomes)
        n_inf = sum(o.n_inferred for o in self.outcomes)
        n_truth = sum(o.n_truth for o in self.outcomes)
        precision, recall, f1 = precision_recall_f1(matched, n_inf, n_truth)
        trips = len(self.outcomes)
        wrong = [o for o in self.outcomes if not o.exact]
        unidentified = [o for o in self.outcomes if UNIDENTIFIED in o.truth]
        ambiguous = [o for o in self.outcomes if o.ambiguous_by_weight]
        decidable = [
            o for o in self.outcomes if UNIDENTIFIED not in o.truth and not o.ambiguous_by_weight
        ]
        return {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "trips_exact": round(sum(o.exact for o in self.outcomes) / trips, 4) if trips else 0.0,
            "trips": trips,
            "trips_flagged": sum(o.reviews > 0 for o in self.outcomes),
            "wrong_trips": len(wrong),
            "wrong_trips_unflagged": sum(o.reviews == 0 for o in wrong),
            "review_items": sum(o.reviews for o in self.outcomes),
            "units_true": n_truth,
            "units_inferred": n_inf,
            "trips_ambiguous_by_weight": len(ambiguous),
            "trips_unidentified_items": len(unidentified),
            "trips_decidable": len(decidable),
            "trips_exact_decidable": (
                round(sum(o.exact for o in decidable) / len(decidable), 4) if decidable else 0.0
            ),
        }


def script(trip: AifiTrip) -> list[ScriptedEvent]:
    """The trip's annotated events that carry units, as events to simulate."""
    return [
        ScriptedEvent(e.time, e.shelf, e.plates, e.action, e.items, e.unidentified)
        for e in trip.events
        if e.time is not None and (e.items or e.unidentified)
    ]


def ambiguous_by_weight(
    trip: AifiTrip, planogram: Planogram, params: InferenceParams | None = None
) -> bool:
    """A true unit of the trip has a twin a weight-only system cannot tell it from.

    A unit of product p put down or taken on event plates E of shelf s rests on R = E and
    p's facing plates (E when they share none). Its twin is another product q within one
    explanation sigma (tolerance / ``tolerance_sigmas``) of p's unit weight that is stocked
    on every plate of R (then the plates that changed cannot tell them apart), or anywhere
    in the store when R is off p's facings (a misplaced unit).
    """
    p = params or InferenceParams()
    for event in trip.events:
        for gtin, _ in event.items:
            weight = planogram.products[gtin].unit_weight_g
            if weight is None:
                return True
            facing = planogram.facing_plates(event.shelf, gtin)
            rest = set(event.plates) & facing or set(event.plates)
            sigma = tolerance_g(weight, p) / p.tolerance_sigmas
            for other, product in planogram.products.items():
                if other == gtin or product.unit_weight_g is None:
                    continue
                if abs(product.unit_weight_g - weight) > sigma:
                    continue
                if not rest & facing or rest <= planogram.facing_plates(event.shelf, other):
                    return True
    return False


def score_trip(
    trip: AifiTrip, result: InferenceResult, planogram: Planogram | None = None
) -> TripOutcome:
    """Compare one trip's inference with its annotations (``planogram``: also decide
    whether the trip is ambiguous by weight)."""
    truth_events = [
        (e.action.value, e.items + (((UNIDENTIFIED, e.unidentified),) if e.unidentified else ()))
        for e in trip.events
    ]
    inferred_events = [(e.action.value, e.items) for e in result.events]
    truth_units = unit_counts(truth_events)
    inferred_units = unit_counts(inferred_events)
    return TripOutcome(
        name=trip.name,
        truth=receipt(truth_events),
        inferred=receipt(inferred_events),
        reviews=len(result.reviews),
        matched=matched_units(truth_units, inferred_units),
        n_inferred=sum(inferred_units.values()),
        n_truth=sum(truth_units.values()),
        ambiguous_by_weight=planogram is not None and ambiguous_by_weight(trip, planogram),
    )


def replay(
    store: AifiStore,
    seed: int = 0,
    trips: int | None = None,
    simulation: SimulationParams | None = None,
    params: InferenceParams | None = None,
) -> ReplayReport:
    """Simulate, infer and score the first ``trips`` trips (all when None)."""
    chosen = store.trips if trips is None else store.trips[:trips]
    outcomes = []
    for i, trip in enumerate(chosen):
        rng = np.random.default_rng([seed, i])
        shelves = simulate_trip(script(trip), store.planogram, rng, simulation)
        result = infer(shelves, store.planogram, params)
        outcomes.append(score_trip(trip, result, store.planogram))
    return ReplayReport(tuple(outcomes))
