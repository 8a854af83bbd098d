"""The noise model of shelf inference (measurement sigma of a change, residual sigma of an
explanation), swaps that are not resting hands, and receipt-level decidability of trips."""

from __future__ import annotations

import math
from datetime import timedelta
from functools import partial

import numpy as np
import pytest
from shelf_streams import SHELF, START, plate_stream

from cart.shelf.aifi import AifiTrip, GroundTruthEvent
from cart.shelf.detect import detect_changes, noise_sigma
from cart.shelf.evaluation import receipt
from cart.shelf.explain import explain, residual_sigma_g
from cart.shelf.inference import ShelfAction, infer
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, Product, build_planogram
from cart.shelf.review import ReviewReason
from cart.shelf.twins import undecidable

# 25 s of 9 plates; a drift rate is drawn for each plate (0 g/min unless given)
_stream = partial(plate_stream, seconds=25.0, drift_g_per_min=0.0)


@pytest.mark.parametrize("noise_g", [0.5, 2.0, 5.0])
def test_noise_sigma_is_estimated_from_the_stream(noise_g: float) -> None:
    stream = _stream([(5.0, {3: -381.0})], noise_g=noise_g)
    assert noise_sigma(stream.grams) == pytest.approx(np.full(9, noise_g), rel=0.15)


@pytest.mark.parametrize("noise_g", [0.5, 2.0, 5.0])
def test_measurement_sigma_of_a_change_matches_its_spread(noise_g: float) -> None:
    # 60 seeded streams of one 381 g pick, with the sensor noise and the drift the params
    # assume: the detector's sigma_g is the spread of delta_g.
    p = InferenceParams()
    deltas, sigmas = [], []
    for seed in range(60):
        stream = _stream([(5.0, {3: -381.0})], noise_g=noise_g, seed=seed,
                         drift_g_per_min=p.drift_g_per_min)
        [change] = detect_changes(stream, p)
        assert change.sigma_g is not None
        deltas.append(change.delta_g)
        sigmas.append(change.sigma_g)
    assert float(np.mean(deltas)) == pytest.approx(-381.0, abs=3 * float(np.mean(sigmas)))
    assert float(np.std(deltas)) / float(np.mean(sigmas)) == pytest.approx(1.0, abs=0.4)


def test_residual_sigma_adds_measurement_and_package_spread() -> None:
    p = InferenceParams()
    one = residual_sigma_g([500.0], p, 3.0)
    assert one == pytest.approx(math.hypot(3.0, 500 * p.unit_weight_cv))
    two = residual_sigma_g([500.0, 500.0], p, 3.0)
    assert two == pytest.approx(math.sqrt(9.0 + 2 * (500 * p.unit_weight_cv) ** 2))
    assert residual_sigma_g([10.0], p, 0.0) == p.min_sigma_g
    assert residual_sigma_g([], p) == pytest.approx(p.change_sigma_g)


def test_a_precise_measurement_tells_products_a_few_grams_apart() -> None:
    # 130 g and 124 g on the same plates: a change measured to 0.5 g decides, one measured
    # to 8 g does not.
    products = [Product("a", "a", 130.0), Product("b", "b", 124.0)]
    sharp = explain(130.0, products, InferenceParams(), sigma_g=0.5)
    blunt = explain(130.0, products, InferenceParams(), sigma_g=8.0)
    assert sharp.best is not None and sharp.best.items == (("a", 1),)
    assert sharp.confidence >= InferenceParams().min_confidence
    assert blunt.confidence < InferenceParams().min_confidence


def _swap_planogram() -> Planogram:
    products = [Product("cola", "cola", 381.0), Product("diet", "diet cola", 371.5)]
    return build_planogram(products, [("cola", SHELF, [4]), ("diet", SHELF, [8])], {SHELF: 9})


def test_put_back_then_pick_of_a_heavier_product_is_not_a_resting_hand() -> None:
    # diet cola (371.5 g) picked from plate 8, put down on the cola's plate 4, and a cola
    # (381 g) picked there 5 s later: the two changes net -9.5 g, under min_change_g but far
    # beyond the noise of 2 g sensors, so they are a put-back and a pick, not a transient.
    stream = _stream([(2.0, {8: -371.5}), (8.0, {4: 371.5}), (13.0, {4: -381.0})])
    result = infer([stream], _swap_planogram())
    assert all(r.reason is not ReviewReason.TRANSIENT for r in result.reviews)
    assert receipt((e.action.value, e.items) for e in result.events) == {"cola": 1}


def test_a_change_undone_within_the_noise_is_still_a_transient() -> None:
    # 381 g set down on plate 4 and lifted again: nets to zero within the noise.
    stream = _stream([(5.0, {4: 381.0}), (10.0, {4: -381.0})])
    result = infer([stream], _swap_planogram())
    assert result.events == ()
    assert [r.reason for r in result.reviews] == [ReviewReason.TRANSIENT]


def _twin_planogram() -> Planogram:
    products = [
        Product("A", "chips", 62.0),
        Product("B", "chips too", 62.3),
        Product("C", "water", 538.0),
        Product("D", "tea", 538.5),
    ]
    placements = [("A", SHELF, [1, 2]), ("B", SHELF, [1, 2]), ("C", SHELF, [5]), ("D", SHELF, [7])]
    return build_planogram(products, placements, {SHELF: 9})


def _trip(*events: tuple[ShelfAction, tuple[int, ...], str]) -> AifiTrip:
    return AifiTrip(
        "t",
        tuple(
            GroundTruthEvent(
                str(i), action, SHELF, plates, START + timedelta(seconds=5 * i), ((gtin, 1),), 0
            )
            for i, (action, plates, gtin) in enumerate(events)
        ),
    )


PICK, PUT = ShelfAction.PICK, ShelfAction.PUT_BACK


def test_a_twin_decides_nothing_when_its_unit_is_put_back() -> None:
    planogram = _twin_planogram()
    assert undecidable(_trip((PICK, (1,), "A")), planogram) == {"same_plates"}
    assert undecidable(_trip((PICK, (1,), "A"), (PUT, (1, 2), "A")), planogram) == frozenset()


def test_a_put_back_that_may_be_either_of_two_held_twins_is_undecidable() -> None:
    planogram = _twin_planogram()
    trip = _trip((PICK, (5,), "C"), (PICK, (7,), "D"), (PUT, (9,), "C"))
    assert undecidable(trip, planogram) == {"held"}
    alone = _trip((PICK, (5,), "C"), (PUT, (9,), "C"))
    assert undecidable(alone, planogram) == frozenset()


def test_events_no_sensor_sees_are_undecidable_unless_they_cancel() -> None:
    planogram = _twin_planogram()
    hidden = _trip((PICK, (5,), "C"), (PUT, (12,), "C"))
    assert undecidable(hidden, planogram) == {"unsensed"}
    undone = _trip((PICK, (5,), "C"), (PUT, (12,), "C"), (PICK, (12,), "C"))
    assert undecidable(undone, planogram) == frozenset()
