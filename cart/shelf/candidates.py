"""Which products may explain a weight change, with the planogram as the prior.

Products stocked on the changed plates or their neighbours are candidates twice: with their
units on their facing plates (prior odds 1) and anywhere on the changed plates (a unit
misplaced nearby, ``off_facing_prior``). Every other product of the store is a candidate for
a single misplaced unit, its prior odds ``misplaced_*_prior`` shared among the store's
products. The verdict of a change is cached: the pipeline asks for it several times.

With the session's history (:class:`SessionContext`), a shopper can only put back what they
hold: for a put-back, products the session picked (or may have picked) keep their odds and
are candidates wherever they are put down (``held_put_back_prior``), other products' odds are
scaled by ``not_held_prior``; a unit put back off its facings is stocked there from then on
(a later pick there may take it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cart.shelf.detect import WeightChange
from cart.shelf.explain import Candidate, Verdict, explain
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, ShelfId


@dataclass
class SessionContext:
    """What the session did so far: ``held`` gtins (every product a pick may have taken) and
    ``placed`` units put back off their facings ((shelf, gtin) -> (plate indices, units))."""

    held: set[str] = field(default_factory=set)
    placed: dict[tuple[ShelfId, str], tuple[frozenset[int], int]] = field(default_factory=dict)

    def put(self, shelf: ShelfId, plates: tuple[int, ...], gtin: str, units: int) -> None:
        """Record ``units`` of ``gtin`` put down on ``plates`` off their facings."""
        known, count = self.placed.get((shelf, gtin), (frozenset(), 0))
        self.placed[(shelf, gtin)] = (known | frozenset(plates), count + units)

    def take(self, shelf: ShelfId, plates: tuple[int, ...], gtin: str, units: int) -> None:
        """A pick of ``units`` of ``gtin`` on ``plates`` takes placed units first."""
        known, count = self.placed.get((shelf, gtin), (frozenset(), 0))
        if count and known & set(plates):
            if count > units:
                self.placed[(shelf, gtin)] = (known, count - units)
            else:
                del self.placed[(shelf, gtin)]


def window(change: WeightChange) -> set[int]:
    """The changed plates and their neighbours."""
    return {q + d for q in change.plates for d in (-1, 0, 1)}


def changed_loads(change: WeightChange, params: InferenceParams) -> dict[int, float]:
    """Grams per plate that changed by more than ``plate_change_g`` in the change's direction
    (magnitudes): the loads the per-plate fit must explain."""
    sign = 1.0 if change.delta_g >= 0 else -1.0
    return {q: sign * g for q, g in change.loads if sign * g > params.plate_change_g}


def candidates(
    change: WeightChange,
    planogram: Planogram,
    params: InferenceParams,
    context: SessionContext | None = None,
) -> list[Candidate]:
    """Candidates of ``change`` (see the module docstring), local ones first."""
    near = window(change)
    placed = {
        g: (plates, units)
        for (shelf, g), (plates, units) in (context.placed.items() if context else ())
        if shelf == change.shelf and plates & near
    }
    local = planogram.products_on(change.shelf, near) | set(placed)
    put_back = change.delta_g > 0

    def odds(gtin: str) -> float:
        if context is None or not put_back or gtin in context.held:
            return 1.0
        return params.not_held_prior

    out: list[Candidate] = []
    for gtin in sorted(local):
        product = planogram.products[gtin]
        facing = planogram.facing_plates(change.shelf, gtin)
        if facing:
            out.append(Candidate(product, facing, odds(gtin)))
        if gtin in placed:
            plates, units = placed[gtin]
            out.append(Candidate(product, plates, odds(gtin), misplaced=True, max_units=units))
        out.append(Candidate(product, None, params.off_facing_prior * odds(gtin), misplaced=True))
    others = [p for g, p in sorted(planogram.products.items()) if g not in local]
    share = (params.misplaced_put_back_prior if put_back else params.misplaced_pick_prior) / max(
        1, len(planogram.products)
    )
    for p in others:
        held = put_back and context is not None and p.gtin in context.held
        prior = params.held_put_back_prior if held else share * odds(p.gtin)
        out.append(Candidate(p, None, prior, alone=True, misplaced=True))
    return out


class Judge:
    """Verdicts of changes against one planogram, cached per change."""

    def __init__(self, planogram: Planogram, params: InferenceParams) -> None:
        self.planogram = planogram
        self.params = params
        self._cache: dict[WeightChange, Verdict] = {}

    def __call__(self, change: WeightChange, context: SessionContext | None = None) -> Verdict:
        """The verdict of ``change`` (its magnitude, per-plate loads and candidates); cached
        only without a session context."""
        verdict = self._cache.get(change) if context is None else None
        if verdict is None:
            verdict = explain(
                abs(change.delta_g),
                candidates(change, self.planogram, self.params, context),
                self.params,
                loads=changed_loads(change, self.params),
            )
            if context is None:
                self._cache[change] = verdict
        return verdict

    def fits(self, change: WeightChange) -> set[tuple[tuple[str, int], ...]]:
        """Every item set that explains ``change`` within tolerance."""
        verdict = self(change)
        if verdict.best is None:
            return set()
        return {verdict.best.items} | {a.items for a in verdict.alternatives}

    def confident(self, change: WeightChange) -> bool:
        """The best explanation of ``change`` reaches ``min_confidence``."""
        verdict = self(change)
        return verdict.best is not None and verdict.confidence >= self.params.min_confidence
