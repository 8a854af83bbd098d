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
from cart.shelf.inference import InferenceResult, infer
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram
from cart.shelf.simulate import ScriptedEvent, SimulationParams, simulate_trip
from cart.shelf.twins import undecidable


@dataclass(frozen=True)
class TripOutcome:
    """One trip: true and inferred receipts (gtin -> net quantity), review count, unit counts,
    and why its receipt is out of reach (:func:`ambiguous_by_weight`, :func:`same_plate_twins`;
    an unidentified unit or a negative line in ``truth``)."""

    name: str
    truth: dict[str, int]
    inferred: dict[str, int]
    reviews: int
    matched: int
    n_inferred: int
    n_truth: int
    ambiguous_by_weight: bool = False
    same_plate_twins: bool = False

    @property
    def exact(self) -> bool:
        """The inferred receipt equals the true one."""
        return self.truth == self.inferred

    @property
    def negative_receipt(self) -> bool:
        """The true receipt credits a product (a put-back of units the trip never picked):
        an inference that never credits more than it billed cannot match it."""
        return any(q < 0 for q in self.truth.values())

    @property
    def reachable(self) -> bool:
        """A weight-only inference can produce the exact receipt with confidence: no
        unidentified unit, no negative line, not ambiguous by weight."""
        return not (UNIDENTIFIED in self.truth or self.negative_receipt or self.ambiguous_by_weight)


@dataclass(frozen=True)
class ReplayReport:
    """Scores over trips (see :func:`replay`); ``outcomes`` lists every trip."""

    outcomes: tuple[TripOutcome, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, float | int]:
        """precision, recall, f1, trips_exact, trips, trips_flagged, wrong_trips_unflagged, ...

        ``trips_ambiguous_by_weight``: trips whose receipt depends on a unit that a weight-only
        system cannot tell from another product (see :func:`ambiguous_by_weight`);
        ``trips_unidentified_items``: trips whose true receipt holds unidentified units (no
        system can bill them); ``trips_negative_receipt``: trips whose true receipt has a
        negative line (:attr:`TripOutcome.negative_receipt`); ``trips_decidable``: the
        others, ``trips_exact_decidable``: trips_exact over them, and
        ``trips_exact_upper_bound``: their share of all trips, the most a weight-only
        inference can reach with confidence. ``trips_same_plate_twins``: trips whose receipt
        depends on a unit that a product stocked on the same plates matches by weight (see
        :func:`same_plate_twins`); ``trips_exact_without_same_plate_twins``: trips_exact over
        the trips with neither those twins nor unidentified units.
        """
        matched = sum(o.matched for o in self.outcomes)
        n_inf = sum(o.n_inferred for o in self.outcomes)
        n_truth = sum(o.n_truth for o in self.outcomes)
        precision, recall, f1 = precision_recall_f1(matched, n_inf, n_truth)
        trips = len(self.outcomes)
        wrong = [o for o in self.outcomes if not o.exact]
        unidentified = [o for o in self.outcomes if UNIDENTIFIED in o.truth]
        ambiguous = [o for o in self.outcomes if o.ambiguous_by_weight]
        decidable = [o for o in self.outcomes if o.reachable]
        plates_decide = [
            o for o in self.outcomes if UNIDENTIFIED not in o.truth and not o.same_plate_twins
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
            "trips_negative_receipt": sum(o.negative_receipt for o in self.outcomes),
            "trips_decidable": len(decidable),
            "trips_exact_decidable": _share(decidable),
            "trips_exact_upper_bound": round(len(decidable) / trips, 4) if trips else 0.0,
            "trips_same_plate_twins": sum(o.same_plate_twins for o in self.outcomes),
            "trips_exact_without_same_plate_twins": _share(plates_decide),
        }


def _share(outcomes: list[TripOutcome]) -> float:
    """Share of exact trips among ``outcomes``, 4 decimals (0.0 when empty)."""
    return round(sum(o.exact for o in outcomes) / len(outcomes), 4) if outcomes else 0.0


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
    """The trip's exact receipt depends on a unit that weight cannot tell from a twin, or on
    events no sensor sees (:func:`cart.shelf.twins.undecidable`)."""
    return bool(undecidable(trip, planogram, params))


def same_plate_twins(
    trip: AifiTrip, planogram: Planogram, params: InferenceParams | None = None
) -> bool:
    """The trip's exact receipt depends on a unit with a twin stocked on the very plates it
    rests on (or of unknown weight): neither plates nor weight can tell them apart."""
    return bool(undecidable(trip, planogram, params) & {"same_plates", "unknown_weight"})


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
        same_plate_twins=planogram is not None and same_plate_twins(trip, planogram),
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
