"""Which products may explain a weight change, with the planogram as the prior.

Products stocked on the changed plates or their neighbours are candidates twice: with their
units on their facing plates (prior odds 1) and anywhere on the changed plates (a unit
misplaced nearby, ``off_facing_prior``). Every other product of the store is a candidate for
a single misplaced unit, its prior odds ``misplaced_*_prior`` shared among the store's
products, or, for a product stocked farther along the same shelf, ``off_facing_prior``
decaying per plate of distance (``off_facing_pick_decay`` for a pick, ``off_facing_decay``
for a put-back) when that is larger (units drift sideways along a shelf, and a planogram's
facings are approximate). The verdict of a change is cached: the pipeline asks for it
several times.

With the session's history (:class:`SessionContext`), a shopper can only put back what they
hold: for a put-back, a product the session holds keeps its odds and is a candidate wherever
it is put down (``held_put_back_prior``); a product it does not hold has its odds scaled by
``not_held_prior``. What the session holds is a posterior expectation: each pick adds every
explanation's items weighted by its posterior share, each put-back removes them the same way,
so a unit put back is no longer held and an alternative the pick's posterior all but ruled
out is held only by that share. A unit put back off its facings is stocked there from then
on: a later change on those plates may take it (prior odds 1, as many units as were put
down), and, like a unit of a product stocked there, a change near them may be that unit moved
(``off_facing_prior``): a unit put down can slide, or be nudged by a hand, onto the next plate,
and that move may go unseen when a similar product explains both of its halves. (Restricting
the put-down unit to its exact plates billed a look-alike stocked next to the plate it slid
to, silently; reviewer's scenario, 2026-11-30, tests/unit/cart/test_cart_shelf_session.py.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cart.shelf.detect import WeightChange
from cart.shelf.explain import Candidate, Verdict, explain
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, ShelfId


@dataclass
class SessionContext:
    """What the session did so far: ``held`` expected units per gtin (posterior-weighted picks
    minus put-backs, never below 0), ``billed`` units per gtin on the receipt so far (billed
    picks minus billed put-backs) and ``placed`` units put back off their facings
    ((shelf, gtin) -> (plate indices, units))."""

    held: dict[str, float] = field(default_factory=dict)
    billed: dict[str, int] = field(default_factory=dict)
    placed: dict[tuple[ShelfId, str], tuple[frozenset[int], int]] = field(default_factory=dict)

    def bill(self, items: tuple[tuple[str, int], ...], sign: int) -> None:
        """Add ``items`` to the receipt (``sign`` 1: a pick, -1: a put-back or an undo)."""
        for gtin, units in items:
            self.billed[gtin] = self.billed.get(gtin, 0) + sign * units

    def billable(self, items: tuple[tuple[str, int], ...]) -> bool:
        """The receipt holds every unit of a put-back of ``items`` (a credit never makes a
        line negative)."""
        return all(self.billed.get(gtin, 0) >= units for gtin, units in items)

    def holds(self, gtin: str) -> float:
        """Probability-like weight in [0, 1] that the shopper holds a unit of ``gtin``."""
        return min(1.0, self.held.get(gtin, 0.0))

    def add(self, items: tuple[tuple[str, int], ...], share: float) -> None:
        """A pick whose explanation ``items`` has posterior ``share``: held units grow."""
        for gtin, units in items:
            self.held[gtin] = self.held.get(gtin, 0.0) + share * units

    def remove(self, items: tuple[tuple[str, int], ...], share: float) -> None:
        """A put-back whose explanation ``items`` has posterior ``share``: held units shrink."""
        for gtin, units in items:
            left = self.held.get(gtin, 0.0) - share * units
            if left > 1e-9:
                self.held[gtin] = left
            else:
                self.held.pop(gtin, None)

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
        if context is None or not put_back:
            return 1.0
        held = context.holds(gtin)
        return params.not_held_prior + (1.0 - params.not_held_prior) * held

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
        held = context.holds(p.gtin) if put_back and context is not None else 0.0
        near_by = _displaced_prior(change, planogram.facing_plates(change.shelf, p.gtin), params)
        prior = max(params.held_put_back_prior * held, max(share, near_by) * odds(p.gtin))
        out.append(Candidate(p, None, prior, alone=True, misplaced=True))
    return out


def _displaced_prior(
    change: WeightChange, facing: frozenset[int], params: InferenceParams
) -> float:
    """Prior odds of a unit displaced from ``facing`` (same shelf) onto the changed plates:
    ``off_facing_prior`` at one plate away, times ``off_facing_pick_decay`` (a pick) or
    ``off_facing_decay`` (a put-back) per further plate (0 when the product has no facing on
    the shelf)."""
    if not facing:
        return 0.0
    distance = min(abs(q - f) for q in change.plates for f in facing)
    decay = params.off_facing_decay if change.delta_g > 0 else params.off_facing_pick_decay
    return params.off_facing_prior * decay ** max(0, distance - 1)


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
                sigma_g=change.sigma_g,
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
