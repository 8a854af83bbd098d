"""Planogram, readings, explanation and scoring helpers of cart.shelf, incl. property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cart.shelf.aifi import parse_time
from cart.shelf.errors import ShelfDataError
from cart.shelf.evaluation import matched_units, precision_recall_f1, receipt, unit_counts
from cart.shelf.explain import explain
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import PlateId, Product, ShelfId, build_planogram
from cart.shelf.weights import PlateReading, readings_to_shelves

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def test_planogram_rejects_facing_off_the_shelf() -> None:
    with pytest.raises(ShelfDataError):
        build_planogram([Product("1", "a", 10.0)], [("1", ShelfId(1, 1), [10])], {ShelfId(1, 1): 9})


def test_product_code_keeps_leading_zeros_and_needs_positive_weight() -> None:
    assert Product("012000181139", "bubly", 370.0).gtin == "012000181139"
    with pytest.raises(ShelfDataError):
        Product("1", "a", 0.0)


def test_readings_are_forward_filled_per_shelf() -> None:
    shelf = ShelfId(2, 3)
    readings = [
        PlateReading(PlateId(shelf, 1), 100.0, T0),
        PlateReading(PlateId(shelf, 2), 50.0, T0 + timedelta(seconds=1)),
        PlateReading(PlateId(shelf, 1), 90.0, T0 + timedelta(seconds=2)),
    ]
    [weights] = readings_to_shelves(readings)
    assert weights.plates == (1, 2)
    assert weights.times_s.tolist() == [0.0, 1.0, 2.0]
    assert weights.grams.tolist() == [[100.0, 50.0], [100.0, 50.0], [90.0, 50.0]]


def test_naive_reading_time_is_rejected() -> None:
    with pytest.raises(ShelfDataError):
        PlateReading(PlateId(ShelfId(1, 1), 1), 1.0, datetime(2024, 1, 1))


def test_aifi_time_formats() -> None:
    assert parse_time("2019-11-07_02-35-28") == datetime(2019, 11, 7, 2, 35, 28, tzinfo=UTC)
    assert parse_time("11_07_2019_03:08:19") == datetime(2019, 11, 7, 3, 8, 19, tzinfo=UTC)
    assert parse_time("1:52 + 2019-11-07_02-41-19") == datetime(2019, 11, 7, 2, 43, 11, tzinfo=UTC)
    assert parse_time(" + ") is None
    with pytest.raises(ShelfDataError):
        parse_time("yesterday")


def test_scoring_counts_units_per_action_and_product() -> None:
    truth = [("pick", (("a", 1),)), ("pick", (("a", 1),)), ("put_back", (("b", 1),))]
    inferred = [("pick", (("a", 2),)), ("pick", (("c", 1),))]
    matched = matched_units(unit_counts(truth), unit_counts(inferred))
    assert matched == 2
    assert precision_recall_f1(matched, 3, 3) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert receipt(truth) == {"a": 2, "b": -1}


weights_g = st.floats(min_value=20.0, max_value=2000.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    unit=weights_g,
    quantity=st.integers(min_value=1, max_value=4),
    error=st.floats(min_value=-1.0, max_value=1.0),
)
def test_lone_product_is_found_with_its_quantity(unit: float, quantity: int, error: float) -> None:
    product = Product("x", "x", unit)
    verdict = explain(quantity * unit + error, [product], InferenceParams())
    assert verdict.best is not None
    assert verdict.best.items == (("x", quantity),)


@settings(max_examples=60, deadline=None)
@given(unit=weights_g, seed=st.integers(0, 2**16))
def test_confidence_is_a_probability_and_twins_are_ambiguous(unit: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    twin = unit * (1.0 + rng.uniform(-0.001, 0.001))
    verdict = explain(unit, [Product("a", "a", unit), Product("b", "b", twin)], InferenceParams())
    assert 0.0 <= verdict.confidence <= 1.0
    assert verdict.confidence < InferenceParams().min_confidence
