"""The pipeline: per-shelf weight arrays + planogram -> picks / put-backs and review items."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cart.shelf.candidates import Judge, SessionContext, window
from cart.shelf.combine import Pair, link_facings, merge_unexplained, resolve_moves
from cart.shelf.detect import WeightChange, detect_changes
from cart.shelf.explain import Verdict
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, ShelfId
from cart.shelf.review import ReviewItem, ReviewReason
from cart.shelf.weights import ShelfWeights


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
    events, the rest review items. A put-back is credited only against units the receipt
    holds (else it is reviewed: ``NOT_BILLED``), and a change with the later one that undoes
    it is billed on both sides or neither. Pure: no I/O, deterministic. Raises nothing for
    odd weights: those become review items.
    """
    p = params or InferenceParams()
    judge = Judge(planogram, p)
    todo: list[_Todo] = []
    pairs: list[Pair] = []
    reviews: list[ReviewItem] = []
    for shelf in shelves:
        linked = link_facings(detect_changes(shelf, p), planogram, judge)
        changes, transients, found = merge_unexplained(resolve_moves(linked, judge, p), judge, p)
        reviews.extend(_transient((c,), shelf, ()) for c in transients)
        todo.extend((c, shelf, None) for c in changes)
        for pair in found:
            todo.extend((c, shelf, len(pairs)) for c in pair)
            pairs.append(pair)
    events = _session(todo, pairs, planogram, judge, reviews)
    events.sort(key=lambda e: (e.time, e.shelf, e.plates))
    reviews.sort(key=lambda r: (r.time, r.shelf, r.plates))
    return InferenceResult(tuple(events), tuple(reviews))


_Todo = tuple[WeightChange, ShelfWeights, int | None]
"""A change to classify, its shelf's weights, and the index of its pair (None: alone)."""


def _session(
    todo: list[_Todo],
    pairs: list[Pair],
    planogram: Planogram,
    judge: Judge,
    reviews: list[ReviewItem],
) -> list[ShelfEvent]:
    """Classify ``todo`` in time order with the session's context (what a put-back can be
    depends on what the session picked before); appends to ``reviews``, returns the events.
    A pair is billed on both sides or neither (see :mod:`cart.shelf.combine`)."""
    events: list[ShelfEvent] = []
    context = SessionContext()
    first_of: dict[int, ShelfEvent | ReviewItem] = {}
    for change, shelf, pid in sorted(todo, key=_start):
        outcome = _classify(change, shelf, planogram, judge, context)
        if pid is not None and pid not in first_of:
            first_of[pid] = outcome
            continue
        both = (outcome,) if pid is None else (first_of.pop(pid), outcome)
        done = [o for o in both if isinstance(o, ShelfEvent)]
        if pid is None or len(done) == 2 or len({_best_items(o) for o in both}) > 1:
            # alone, billed, or (in this session's context) not one product moved twice.
            events.extend(done)
            reviews.extend(o for o in both if isinstance(o, ReviewItem))
            continue
        for event in done:
            context.bill(event.items, -1 if event.action is ShelfAction.PICK else 1)
        fits = next(o.candidates for o in both if isinstance(o, ReviewItem))
        reviews.append(_transient(pairs[pid], shelf, fits))
    return events


def _best_items(outcome: ShelfEvent | ReviewItem) -> tuple[tuple[str, int], ...]:
    """The items of an event, or the best candidate of a review item (() when none fits)."""
    if isinstance(outcome, ShelfEvent):
        return outcome.items
    return outcome.candidates[0] if outcome.candidates else ()


def _start(item: _Todo) -> tuple[datetime, ShelfId]:
    change, shelf, _ = item
    return shelf.time_at(change.t_start_s), shelf.shelf


def _transient(
    group: tuple[WeightChange, ...],
    shelf: ShelfWeights,
    fits: tuple[tuple[tuple[str, int], ...], ...],
) -> ReviewItem:
    """One TRANSIENT review item for changes that together undo each other."""
    return ReviewItem(
        group[0].shelf,
        tuple(sorted({q for c in group for q in c.plates})),
        shelf.time_at(group[0].t_start_s),
        sum(c.delta_g for c in group),
        ReviewReason.TRANSIENT,
        fits,
        0.0,
    )


def _remember(
    change: WeightChange, verdict: Verdict, confident: bool, context: SessionContext
) -> None:
    if verdict.best is None:
        return
    fits = zip(
        (verdict.best, *verdict.alternatives), (verdict.confidence, *verdict.shares), strict=True
    )
    for fit, share in fits:
        # every explanation by its posterior share: held units are an expectation.
        if change.delta_g < 0:
            context.add(fit.items, share)
        else:
            context.remove(fit.items, share)
    if change.delta_g < 0:
        if confident:
            for gtin, units in verdict.best.items:
                context.take(change.shelf, change.plates, gtin, units)
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
    credit = action is ShelfAction.PUT_BACK
    if best is not None and confident and (not credit or context.billable(best.items)):
        context.bill(best.items, -1 if credit else 1)
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
    if best is not None and confident:
        reason = ReviewReason.NOT_BILLED
    elif best is not None:
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
