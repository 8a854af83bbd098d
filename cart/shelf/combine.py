"""Combining the detector's per-plate changes into the changes a shopper made.

Three steps, all on the changes of one shelf (see :mod:`cart.shelf.detect`):

1. :func:`link_facings`: two same-sign changes of one unstable stretch on non-adjacent plates
   that one product's facing spans are one change when either is not confidently explained
   alone (units of a product stocked on plates 3 and 5 split their weight between them).
2. :func:`resolve_moves`: a fall and a rise of one unstable stretch that cancel (below
   ``min_change_g`` and within the noise: :func:`_undone`) are one item moved along the
   shelf when both are best explained by the same items, the fall confidently; they are
   dropped (the receipt is unchanged). Otherwise both stay (a pick of one product and a
   put-back of a similar one): they are explained, or reviewed, each on its own.
3. :func:`merge_unexplained`: a change that fits nothing is merged with the next change on
   overlapping plates (a hand pressing, then taking); so is a change explained without
   confidence when the two together are confidently explained, and likelier than the next
   alone (a hand resting through a pick or put-back). A merged change of about zero (under
   ``min_change_g`` and within ``cutoff_sigmas`` of the two changes' measurement sigma) is
   a transient (a resting hand, an object set down and lifted); a put-back of one product
   and a pick of one a few grams heavier net to more than the noise and stay two changes.
   A change undone by the next one with the same best explanation is kept as a *pair*: the
   pipeline bills both or neither (a put-back and pick of one product net to nothing either
   way, so one side must not reach the receipt while the other goes to review).
"""

from __future__ import annotations

import math

from cart.shelf.candidates import Judge
from cart.shelf.detect import WeightChange
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram


def merge(a: WeightChange, b: WeightChange) -> WeightChange:
    """One change made of ``a`` and ``b`` (same shelf): loads summed per plate; measurement
    sigmas combined as independent (an upper bound: a level the two share cancels), unknown
    when either is."""
    loads: dict[int, float] = {}
    for q, g in (*a.loads, *b.loads):
        loads[q] = loads.get(q, 0.0) + g
    sigma = None
    if a.sigma_g is not None and b.sigma_g is not None:
        sigma = math.hypot(a.sigma_g, b.sigma_g)
    return WeightChange(
        a.shelf,
        tuple(sorted(set(a.plates) | set(b.plates))),
        a.delta_g + b.delta_g,
        min(a.t_start_s, b.t_start_s),
        max(a.t_end_s, b.t_end_s),
        tuple(sorted(loads.items())),
        sigma,
    )


def _same_stretch(a: WeightChange, b: WeightChange) -> bool:
    return a.shelf == b.shelf and (a.t_start_s, a.t_end_s) == (b.t_start_s, b.t_end_s)


def _shared_facing(a: WeightChange, b: WeightChange, planogram: Planogram) -> bool:
    return bool(planogram.products_on(a.shelf, a.plates) & planogram.products_on(b.shelf, b.plates))


def link_facings(
    changes: list[WeightChange], planogram: Planogram, judge: Judge
) -> list[WeightChange]:
    """Step 1 of the module docstring; returns the changes in time order."""
    pending = sorted(changes, key=lambda c: (c.t_start_s, c.plates))
    out: list[WeightChange] = []
    while pending:
        change = pending.pop(0)
        for k, other in enumerate(pending):
            if (
                _same_stretch(change, other)
                and (change.delta_g > 0) == (other.delta_g > 0)
                and _shared_facing(change, other, planogram)
                and not (judge.confident(change) and judge.confident(other))
            ):
                pending[k] = merge(change, other)
                break
        else:
            out.append(change)
    return sorted(out, key=lambda c: (c.t_start_s, c.plates))


def resolve_moves(
    changes: list[WeightChange], judge: Judge, params: InferenceParams
) -> list[WeightChange]:
    """Step 2 of the module docstring."""
    dropped: set[int] = set()
    for i, a in enumerate(changes):
        for j in range(i + 1, len(changes)):
            b = changes[j]
            if (
                i in dropped
                or j in dropped
                or not _same_stretch(a, b)
                or (a.delta_g > 0) == (b.delta_g > 0)
                or not _undone(a, b, params)
            ):
                continue
            va, vb = judge(a), judge(b)
            if (
                judge.confident(a if a.delta_g < 0 else b)
                and va.best is not None
                and vb.best is not None
                and va.best.items == vb.best.items
            ):
                dropped |= {i, j}
    return [c for k, c in enumerate(changes) if k not in dropped]


Pair = tuple[WeightChange, WeightChange]
"""A change and the later one that undoes it with the same best explanation."""


def merge_unexplained(
    changes: list[WeightChange], judge: Judge, p: InferenceParams
) -> tuple[list[WeightChange], list[WeightChange], list[Pair]]:
    """Step 3 of the module docstring.

    A resting hand or a bag set down and lifted sums to about zero (:func:`_undone`) and is
    dropped, also when its rise happens to fit products, unless its rise and fall fit the
    same products (a put-back and pick, or pick and put-back, which nets to nothing on the
    receipt either way): those are returned as a pair. A change explained without confidence
    is merged with the next when that explains both better (``_explains_better``). Merging
    repeats while the merged change still fits nothing (``merge_window_s``). Returns the
    changes to explain, the dropped transients whose rise fitted products (a pick of one
    product and a put-back of a similar one look the same: staff decide), and the pairs.
    """
    pending = sorted(changes, key=lambda c: (c.t_start_s, c.plates))
    out: list[WeightChange] = []
    suspicious: list[WeightChange] = []
    pairs: list[Pair] = []
    while pending:
        change = pending.pop(0)
        k = _partner(change, pending, p)
        if k is None:
            out.append(change)
            continue
        later = pending[k]
        undone = _undone(change, later, p)
        first = judge(change)
        if not undone and _explains_better(judge, change, later):
            # a hand resting or pressing through a pick or put-back: one change.
            pending.insert(0, merge(change, pending.pop(k)))
            continue
        if first.best is not None and _same_best(judge, change, later):
            pairs.append((change, pending.pop(k)))
            continue
        if first.best is not None and not undone:
            out.append(change)
            continue
        # nothing fits, or the change is undone by one explained differently: a transient.
        pending.pop(k)
        if undone:
            if first.best is not None:
                suspicious.append(change)
            continue
        pending.insert(0, merge(change, later))
    return out, suspicious, pairs


def _undone(a: WeightChange, b: WeightChange, p: InferenceParams) -> bool:
    """``b`` undoes ``a``: together they change the shelf by less than ``min_change_g`` and,
    when both carry a measurement sigma, by no more than ``cutoff_sigmas`` of their combined
    sigma (a put-back of one product and a pick of a product a few grams heavier are not a
    hand that rested and left)."""
    total = abs(a.delta_g + b.delta_g)
    if total >= p.min_change_g:
        return False
    if a.sigma_g is None or b.sigma_g is None:
        return True
    return total <= p.cutoff_sigmas * math.hypot(a.sigma_g, b.sigma_g)


def _explains_better(judge: Judge, a: WeightChange, b: WeightChange) -> bool:
    """``a`` is not confidently explained, ``a`` and ``b`` together are, and their best
    explanation is likelier (prior x density) than the best of ``b`` alone: ``a`` was a hand
    pressing or resting before ``b`` took or put down the units."""
    if judge.confident(a):
        return False
    merged = merge(a, b)
    best, alone = judge(merged).best, judge(b).best
    return (
        judge.confident(merged)
        and best is not None
        and (alone is None or best.likelihood > alone.likelihood)
    )


def _same_best(judge: Judge, a: WeightChange, b: WeightChange) -> bool:
    """``b`` undoes ``a``: opposite signs, the same best explanation."""
    if (a.delta_g > 0) == (b.delta_g > 0):
        return False
    va, vb = judge(a), judge(b)
    return va.best is not None and vb.best is not None and va.best.items == vb.best.items


def _partner(change: WeightChange, pending: list[WeightChange], p: InferenceParams) -> int | None:
    near = {q + d for q in change.plates for d in (-1, 0, 1)}
    for k, later in enumerate(pending):
        if later.t_start_s - change.t_end_s > p.merge_window_s:
            return None
        if later.shelf == change.shelf and near & set(later.plates):
            return k
    return None
