"""The pipeline: per-shelf weight arrays + planogram -> picks / put-backs and review items."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cart.shelf.candidates import Judge, SessionContext, window
from cart.shelf.combine import link_facings, merge_unexplained, resolve_moves
from cart.shelf.detect import WeightChange, detect_changes
from cart.shelf.explain import Verdict
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, ShelfId
from cart.shelf.review import ReviewItem, ReviewReason
from cart.shelf.weights import ShelfWeights

HELD_SHARE = 0.01
"""Posterior share above which an alternative of a pick counts as possibly held."""


class ShelfAction(StrEnum):
    """What the shopper did at the shelf."""

    PICK = "pick"
    PUT_BACK = "put_back"


@dataclass(frozen=True)
class ShelfEvent:
    """An inferred pick or put-back.

    ``items``: (gtin, quantity >= 1) pairs; ``delta_g``: measured change in grams (negative for a
    pick); ``confidence``: posterior probability of this explanation, in [0, 1]; ``misplaced``:
    a put-back of a product that does not belong on those plates (identified store-wide).
    """

    action: ShelfAction
    shelf: ShelfId
    plates: tuple[int, ...]
    time: datetime
    items: tuple[tuple[str, int], ...]
    delta_g: float
    confidence: float
    misplaced: bool = False


@dataclass(frozen=True)
class InferenceResult:
    """Events in time order, and the review queue."""

    events: tuple[ShelfEvent, ...] = field(default_factory=tuple)
    reviews: tuple[ReviewItem, ...] = field(default_factory=tuple)


def infer(
    shelves: Iterable[ShelfWeights], planogram: Planogram, params: InferenceParams | None = None
) -> InferenceResult:
    """Infer picks, put-backs and review items from the weight arrays of any number of shelves.

    Per shelf: detect settled changes (:mod:`cart.shelf.detect`), combine them into the
    shopper's changes (:mod:`cart.shelf.combine`), explain each with the planogram
    (:mod:`cart.shelf.candidates`, :mod:`cart.shelf.explain`); confident explanations become
    events, the rest review items. Pure: no I/O, deterministic. Raises nothing for odd
    weights: those become review items.
    """
    p = params or InferenceParams()
    judge = Judge(planogram, p)
    todo: list[tuple[WeightChange, ShelfWeights]] = []
    reviews: list[ReviewItem] = []
    for shelf in shelves:
        linked = link_facings(detect_changes(shelf, p), planogram, judge)
        changes, transients = merge_unexplained(resolve_moves(linked, judge, p), judge, p)
        reviews.extend(
            ReviewItem(
                c.shelf,
                c.plates,
                shelf.time_at(c.t_start_s),
                c.delta_g,
                ReviewReason.TRANSIENT,
                (),
                0.0,
            )
            for c in transients
        )
        todo.extend((c, shelf) for c in changes)
    events: list[ShelfEvent] = []
    context = SessionContext()
    # in time order: what a put-back can be depends on what the session picked before.
    for change, shelf in sorted(todo, key=lambda cs: (cs[1].time_at(cs[0].t_start_s), cs[0].shelf)):
        outcome = _classify(change, shelf, planogram, judge, context)
        if isinstance(outcome, ShelfEvent):
            events.append(outcome)
        else:
            reviews.append(outcome)
    events.sort(key=lambda e: (e.time, e.shelf, e.plates))
    reviews.sort(key=lambda r: (r.time, r.shelf, r.plates))
    return InferenceResult(tuple(events), tuple(reviews))


def _remember(
    change: WeightChange, verdict: Verdict, confident: bool, context: SessionContext
) -> None:
    if verdict.best is None:
        return
    if change.delta_g < 0:
        # every product the pick may have taken, unless its posterior is negligible.
        context.held.update(g for g, _ in verdict.best.items)
        if confident:
            for gtin, units in verdict.best.items:
                context.take(change.shelf, change.plates, gtin, units)
        for fit, share in zip(verdict.alternatives, verdict.shares, strict=True):
            if share >= HELD_SHARE:
                context.held.update(g for g, _ in fit.items)
    elif confident and verdict.best.misplaced:
        for gtin, units in verdict.best.items:
            context.put(change.shelf, change.plates, gtin, units)


def _classify(
    change: WeightChange,
    shelf: ShelfWeights,
    planogram: Planogram,
    judge: Judge,
    context: SessionContext,
) -> ShelfEvent | ReviewItem:
    action = ShelfAction.PICK if change.delta_g < 0 else ShelfAction.PUT_BACK
    time = shelf.time_at(0.5 * (change.t_start_s + change.t_end_s))
    verdict = judge(change, context)
    best = verdict.best
    confident = best is not None and verdict.confidence >= judge.params.min_confidence
    _remember(change, verdict, confident, context)
    if best is not None and confident:
        return ShelfEvent(
            action,
            change.shelf,
            change.plates,
            time,
            best.items,
            change.delta_g,
            verdict.confidence,
            best.misplaced,
        )
    if best is not None:
        reason = ReviewReason.AMBIGUOUS
    elif any(
        planogram.products[g].unit_weight_g is None
        for g in planogram.products_on(change.shelf, window(change))
    ):
        reason = ReviewReason.UNKNOWN_WEIGHT
    else:
        reason = ReviewReason.UNEXPLAINED
    fits = (best, *verdict.alternatives) if best is not None else ()
    return ReviewItem(
        change.shelf,
        change.plates,
        time,
        change.delta_g,
        reason,
        tuple(f.items for f in fits),
        verdict.confidence,
    )
