"""Weight twins of annotated trips: true units that weight cannot tell from another product.

Used to split replay scores into trips a weight-only system can decide and trips it cannot.
A unit of product p taken or put down on event plates E of shelf s rests on R = E and p's
facing plates (E when they share none). Another product q is its *twin* when q's unit weight
is within one residual sigma of p's (:func:`cart.shelf.explain.residual_sigma_g` of one unit
of p, with the params' nominal ``change_sigma_g``) and q is at least as plausible as p by what
a weight-only system knows besides weight:

- where: ``place(x)`` is 0 when x is stocked on every plate of R or this session put a unit
  of x down on those plates before, else the plate distance from R to x's facing on s (at
  least 1; infinite when x is not stocked on s). q qualifies when
  ``place(q) <= place(p)``: with p on its facing only products stocked on the same plates
  (``same_plates``), with p off its facing also products stocked no farther away, and
  anywhere in the store when p is not stocked on s (``off_facing``);
- for a put-back, what the session holds (ground truth: units picked minus put back before
  the event): a put-back off p's facing may also be any product the session holds
  (``held``), but not a product stocked elsewhere that the session does not hold while it
  holds p.

A twin makes the *receipt* undecidable only when it changes what is billed
(:func:`undecidable`): units are followed from their pick to their put-back, so a unit picked
with a twin and put back (the shopper puts back what they hold: the same unit, whatever it
was) leaves nothing to decide, while one still held at the end, a put-back that may be
either of two held twins, or a put-back of a unit the trip never picked, with a twin, does.
Events on plates no sensor has are invisible to any weight-only system: they make the
receipt undecidable unless they cancel out per product.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from cart.shelf.aifi import AifiTrip, GroundTruthEvent
from cart.shelf.explain import residual_sigma_g
from cart.shelf.inference import ShelfAction
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, ShelfId


@dataclass(frozen=True)
class Twin:
    """``gtin`` of event ``event_id`` and its twin ``other``: unit weights in grams, the
    explanation ``sigma_g`` and why the twin counts (``same_plates``, ``off_facing``,
    ``held``)."""

    event_id: str
    action: ShelfAction
    shelf: ShelfId
    plates: tuple[int, ...]
    gtin: str
    weight_g: float
    other: str
    other_weight_g: float
    sigma_g: float
    reason: str


def weight_twins(
    trip: AifiTrip, planogram: Planogram, params: InferenceParams | None = None
) -> list[Twin]:
    """Every (unit, twin) of the trip (see the module docstring); a unit of unknown weight
    is its own twin (``unknown_weight``)."""
    p = params or InferenceParams()
    held: Counter[str] = Counter()
    placed: dict[tuple[ShelfId, str], set[int]] = {}
    out: list[Twin] = []
    for event in trip.events:
        out.extend(_event_twins(event, planogram, p, held, placed))
        for gtin, units in event.items:
            if event.action is ShelfAction.PICK:
                held[gtin] += units
            else:
                held[gtin] = max(0, held[gtin] - units)
                placed.setdefault((event.shelf, gtin), set()).update(event.plates)
    return out


def _event_twins(
    event: GroundTruthEvent,
    planogram: Planogram,
    p: InferenceParams,
    held: Counter[str],
    placed: dict[tuple[ShelfId, str], set[int]],
) -> Iterator[Twin]:
    put_back = event.action is ShelfAction.PUT_BACK
    for gtin, _ in event.items:
        weight = planogram.products[gtin].unit_weight_g
        if weight is None:
            yield Twin(event.event_id, event.action, event.shelf, event.plates, gtin, 0.0,
                       gtin, 0.0, 0.0, "unknown_weight")  # fmt: skip
            continue
        facing = planogram.facing_plates(event.shelf, gtin)
        rest = frozenset(set(event.plates) & facing or event.plates)
        own = _place(rest, event.shelf, gtin, planogram, placed)
        sigma = residual_sigma_g([weight], p)
        for other, product in sorted(planogram.products.items()):
            if other == gtin or product.unit_weight_g is None:
                continue
            if abs(product.unit_weight_g - weight) > sigma:
                continue
            place = _place(rest, event.shelf, other, planogram, placed)
            reason = _reason(own, place, put_back, held[gtin] > 0, held[other] > 0)
            if reason is not None:
                yield Twin(event.event_id, event.action, event.shelf, event.plates, gtin,
                           weight, other, product.unit_weight_g, sigma, reason)  # fmt: skip


def undecidable(
    trip: AifiTrip, planogram: Planogram, params: InferenceParams | None = None
) -> frozenset[str]:
    """Why no weight-only inference can tell the trip's exact receipt (empty: it can).

    Reasons: the twin reasons of :func:`weight_twins` (``same_plates``, ``unknown_weight``,
    ``off_facing``, ``held``) of a unit that stays billed or of a put-back whose identity is
    in doubt (see the module docstring), and ``unsensed`` (events on plates no sensor has
    that do not cancel out per product). Unidentified units and negative receipt lines are
    not reasons here (see :mod:`cart.shelf.replay`).
    """
    p = params or InferenceParams()
    twins: dict[tuple[str, str], list[Twin]] = {}
    for t in weight_twins(trip, planogram, p):
        twins.setdefault((t.event_id, t.gtin), []).append(t)
    tokens: dict[str, list[frozenset[str]]] = {}  # gtin -> each held unit's twin reasons
    reasons: set[str] = set()
    unsensed: Counter[str] = Counter()
    for event in trip.events:
        seen = any(q <= planogram.plates_per_shelf.get(event.shelf, 0) for q in event.plates)
        for gtin, units in event.items:
            found = twins.get((event.event_id, gtin), []) if seen else []
            if not seen:
                unsensed[gtin] += units if event.action is ShelfAction.PICK else -units
            for _ in range(units):
                held = tokens.setdefault(gtin, [])
                if event.action is ShelfAction.PICK:
                    held.append(frozenset(t.reason for t in found))
                elif held:
                    # the unit put back is one the session holds (a certain one first: an
                    # uncertain one left held stays uncertain); if the session also holds
                    # a twin, which of the two went back is in doubt.
                    held.remove(min(held, key=len))
                    reasons |= {t.reason for t in found if tokens.get(t.other)}
                else:
                    reasons |= {t.reason for t in found}
    for held in tokens.values():
        for why in held:
            reasons |= why
    if any(unsensed.values()):
        reasons.add("unsensed")
    return frozenset(reasons)


def _reason(own: float, place: float, put_back: bool, holds: bool, holds_other: bool) -> str | None:
    """Why a product at ``place`` is a twin of a unit at ``own`` (None: it is not)."""
    if own == 0:
        return "same_plates" if place == 0 else None
    if put_back and holds_other:
        return "held"
    if place <= own and (not put_back or math.isfinite(place) or not holds):
        return "off_facing"
    return None


def _place(
    rest: frozenset[int],
    shelf: ShelfId,
    gtin: str,
    planogram: Planogram,
    placed: dict[tuple[ShelfId, str], set[int]],
) -> float:
    """0 on every plate of ``rest`` (or put down there before), else plate distance >= 1."""
    facing = planogram.facing_plates(shelf, gtin)
    if rest <= facing or rest & placed.get((shelf, gtin), set()):
        return 0.0
    if not facing:
        return math.inf
    return float(max(1, min(abs(q - f) for q in rest for f in facing)))
