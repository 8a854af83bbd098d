"""Explain a weight change as a combination of products: a Bayesian bounded knapsack.

A hypothesis is a multiset of at most ``max_units`` units drawn from the candidates; each
candidate is a product plus the plates its units may rest on (its facing, or anywhere in the
change for a misplaced unit) and a prior. A hypothesis is scored by

- the Gaussian density of its total-weight residual. Its sigma is the noise model's
  (:func:`residual_sigma_g`): the change's own measurement sigma (sensor noise of the levels
  and drift, estimated by :mod:`cart.shelf.detect` from the stream) combined with the
  package-to-package spread of each unit (``unit_weight_cv`` x unit weight), never below
  ``min_sigma_g``; beyond ``cutoff_sigmas`` the hypothesis is dropped;
- its per-plate fit: the weight on the changed plates that its units cannot rest on, found as
  the deficiency of a transportation problem (units supply their weight to the plates they
  may rest on, each changed plate demands its change): by the max-flow min-cut theorem the
  unserved demand is ``max over plate sets S of (demand(S) - supply of units touching S)``
  (Gale, "A theorem on flows in networks", Pacific J. Math. 7, 1957), scored as a Gaussian
  of sigma ``plate_sigma_g``;
- prior odds preferring fewer units, fewer distinct products, and units on their facings.

The posterior is normalised over every hypothesis plus an "unknown item" hypothesis with a
flat weight density over ``unknown_range_g`` (1 / weight beyond; when every combination
together has under ``NOTHING_FITS`` of the posterior, nothing fits), and summed per set of
(product, quantity): two products of one weight
on the same plates share the posterior (a low confidence), products of one weight on
different plates are told apart by the plates that changed. This is the weight-matching step
of Falcão et al., BuildSys 2019 (AIM3S), made Bayesian and plate-aware.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement, product

from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Product

_SQRT_2PI = math.sqrt(2.0 * math.pi)
NOTHING_FITS = 0.01
"""When every combination together has less posterior than this, nothing fits."""


@dataclass(frozen=True)
class Candidate:
    """A product that may explain a change.

    ``plates``: plate indices its units may rest on (None: any changed plate); ``prior``:
    prior odds per unit; ``alone``: only considered as a single-unit explanation (a unit
    identified store-wide); ``misplaced``: its units are off the product's facings;
    ``max_units``: most units it can supply (None: no limit).
    """

    product: Product
    plates: frozenset[int] | None = None
    prior: float = 1.0
    alone: bool = False
    misplaced: bool = False
    max_units: int | None = None


@dataclass(frozen=True)
class Explanation:
    """``items``: (gtin, quantity >= 1) pairs sorted by gtin; weights in grams (magnitudes).

    ``sigma_g``: standard deviation of the residual under the noise model
    (:func:`residual_sigma_g`); ``plate_misfit_g``: weight on changed plates these units
    cannot rest on (beyond the total residual); ``likelihood``: prior x densities
    (unnormalised posterior); ``misplaced``: some unit is off its product's facings.
    """

    items: tuple[tuple[str, int], ...]
    expected_g: float
    residual_g: float
    sigma_g: float
    plate_misfit_g: float
    prior: float
    likelihood: float
    misplaced: bool = False

    @property
    def units(self) -> int:
        """Total number of units."""
        return sum(q for _, q in self.items)


@dataclass(frozen=True)
class Verdict:
    """``best`` explanation (None when nothing fits), the best explanation of every other set
    of items (best first), the posterior probability of best's items, and the posterior of
    every alternative's items (aligned with ``alternatives``)."""

    best: Explanation | None
    alternatives: tuple[Explanation, ...]
    confidence: float
    shares: tuple[float, ...] = ()


def residual_sigma_g(
    unit_weights_g: Sequence[float], params: InferenceParams, change_sigma_g: float | None = None
) -> float:
    """Standard deviation in grams of the residual of a hypothesis whose units weigh
    ``unit_weights_g`` (nominal grams, one entry per unit) against a change measured with
    standard deviation ``change_sigma_g`` (None: ``params.change_sigma_g``): the two are
    independent, each unit's weight spreads by ``unit_weight_cv`` of itself; at least
    ``min_sigma_g``."""
    measured = params.change_sigma_g if change_sigma_g is None else change_sigma_g
    spread = sum((params.unit_weight_cv * w) ** 2 for w in unit_weights_g)
    return max(params.min_sigma_g, math.sqrt(measured**2 + spread))


def explain(
    magnitude_g: float,
    candidates: Sequence[Product | Candidate],
    params: InferenceParams,
    max_units: int | None = None,
    loads: Mapping[int, float] | None = None,
    sigma_g: float | None = None,
) -> Verdict:
    """Score combinations of ``candidates`` against a change of ``magnitude_g`` grams (> 0).

    ``loads``: grams (magnitudes, in the change's direction) per changed plate index; without
    it, or with more than ``max_plates_checked`` plates, only the total is fitted.
    ``sigma_g``: the change's measurement standard deviation in grams (None: the params'
    ``change_sigma_g``). Candidates with an unknown unit weight are skipped. Returns the best
    item set's best explanation, the other item sets' best explanations, and the best item
    set's posterior. Raises nothing.
    """
    cands = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    cands = [c for c in cands if c.product.unit_weight_g]
    limit = params.max_units if max_units is None else max_units
    plates = _PlateFit(loads or {}, params)
    noise = _Noise(magnitude_g, sigma_g, params)
    fits = _combined(noise, [c for c in cands if not c.alone], limit, plates, params)
    for cand in (c for c in cands if c.alone):
        fit = _score(noise, ((cand, 1),), plates, params)
        if fit is not None:
            fits.append(fit)
    return _verdict(fits, magnitude_g, params)


@dataclass(frozen=True)
class _Noise:
    """The measured magnitude (grams), its measurement sigma and the params."""

    magnitude_g: float
    sigma_g: float | None
    params: InferenceParams

    def sigma(self, unit_weights_g: Sequence[float]) -> float:
        return residual_sigma_g(unit_weights_g, self.params, self.sigma_g)

    def too_far(self, expected_g: float, unit_weights_g: Sequence[float]) -> bool:
        """The residual is beyond ``cutoff_sigmas``: the hypothesis is not scored."""
        cutoff = self.params.cutoff_sigmas * self.sigma(unit_weights_g)
        return abs(self.magnitude_g - expected_g) > cutoff


def _combined(
    noise: _Noise,
    cands: list[Candidate],
    limit: int,
    plates: _PlateFit,
    params: InferenceParams,
) -> list[Explanation]:
    variants: dict[str, list[Candidate]] = {}
    for c in cands:
        variants.setdefault(c.product.gtin, []).append(c)
    weight = {g: float(v[0].product.unit_weight_g or 0.0) for g, v in variants.items()}
    fits: list[Explanation] = []
    for units in range(1, limit + 1):
        for combo in combinations_with_replacement(sorted(variants), units):
            unit_weights = [weight[g] for g in combo]
            if noise.too_far(sum(unit_weights), unit_weights):
                continue
            counts = sorted(Counter(combo).items())
            for choice in product(*(variants[g] for g, _ in counts)):
                if any(
                    c.max_units is not None and c.max_units < q
                    for c, (_, q) in zip(choice, counts, strict=True)
                ):
                    continue
                units_of = tuple((c, q) for c, (_, q) in zip(choice, counts, strict=True))
                fit = _score(noise, units_of, plates, params)
                if fit is not None:
                    fits.append(fit)
    return fits


def _score(
    noise: _Noise,
    units_of: tuple[tuple[Candidate, int], ...],
    plates: _PlateFit,
    params: InferenceParams,
) -> Explanation | None:
    unit_weights = [float(c.product.unit_weight_g or 0.0) for c, q in units_of for _ in range(q)]
    expected = sum(unit_weights)
    if noise.too_far(expected, unit_weights):
        return None
    residual = abs(noise.magnitude_g - expected)
    misfit = plates.misfit(units_of, expected)
    if misfit > params.cutoff_sigmas * params.plate_sigma_g:
        return None
    n_units = sum(q for _, q in units_of)
    prior = params.extra_unit_prior ** (n_units - 1) * params.extra_product_prior ** (
        len(units_of) - 1
    )
    for cand, q in units_of:
        prior *= cand.prior**q
    sigma = noise.sigma(unit_weights)
    plate_sigma = params.plate_sigma_g
    density = math.exp(-0.5 * ((residual / sigma) ** 2 + (misfit / plate_sigma) ** 2))
    items = tuple(sorted((c.product.gtin, q) for c, q in units_of))
    return Explanation(
        items,
        expected,
        residual,
        sigma,
        misfit,
        prior,
        prior * density / (sigma * _SQRT_2PI),
        any(c.misplaced for c, _ in units_of),
    )


class _PlateFit:
    """Per-plate fit of a set of units to the loads of the changed plates (see module doc)."""

    def __init__(self, loads: Mapping[int, float], params: InferenceParams) -> None:
        self.plates = sorted(q for q, g in loads.items() if g > 0.0)
        if len(self.plates) > params.max_plates_checked:
            self.plates = []
        self.bit = {q: 1 << i for i, q in enumerate(self.plates)}
        n = len(self.plates)
        self.demand = [
            sum(loads[q] for i, q in enumerate(self.plates) if s >> i & 1) for s in range(1 << n)
        ]

    def misfit(self, units_of: tuple[tuple[Candidate, int], ...], expected_g: float) -> float:
        """Grams of changed-plate load the units cannot serve, beyond the shortfall of their
        total weight ``expected_g`` (which the total residual already scores)."""
        if not self.plates:
            return 0.0
        full = (1 << len(self.plates)) - 1
        supply = []
        for cand, q in units_of:
            mask = full if cand.plates is None else sum(self.bit.get(p, 0) for p in cand.plates)
            supply.append((mask, float(cand.product.unit_weight_g or 0.0) * q))
        unserved = 0.0
        for s in range(1, full + 1):
            reach = sum(w for mask, w in supply if mask & s)
            unserved = max(unserved, self.demand[s] - reach)
        return max(0.0, unserved - max(0.0, self.demand[full] - expected_g))


def _verdict(fits: list[Explanation], magnitude_g: float, params: InferenceParams) -> Verdict:
    if not fits:
        return Verdict(None, (), 0.0)
    mass: dict[tuple[tuple[str, int], ...], float] = {}
    top: dict[tuple[tuple[str, int], ...], Explanation] = {}
    for fit in fits:
        mass[fit.items] = mass.get(fit.items, 0.0) + fit.likelihood
        if fit.items not in top or fit.likelihood > top[fit.items].likelihood:
            top[fit.items] = fit
    ranked = sorted(top.values(), key=lambda f: (-mass[f.items], f.units, f.residual_g))
    unknown = params.unknown_prior / max(params.unknown_range_g, magnitude_g)
    total = sum(mass.values()) + unknown
    if sum(mass.values()) < NOTHING_FITS * total:
        return Verdict(None, (), 0.0)
    shares = tuple(mass[f.items] / total for f in ranked[1:])
    return Verdict(ranked[0], tuple(ranked[1:]), mass[ranked[0].items] / total, shares)
