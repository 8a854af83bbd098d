"""Shelf-weight inference on hand-made plate streams (20 Hz, seeded noise)."""

from __future__ import annotations

import numpy as np
import pytest
from shelf_streams import SHELF, START, plate_stream

from cart.shelf.evaluation import receipt
from cart.shelf.inference import ShelfAction, infer
from cart.shelf.planogram import Planogram, Product, build_planogram
from cart.shelf.review import ReviewReason
from cart.shelf.weights import ShelfWeights


def _planogram() -> Planogram:
    products = [
        Product("00001", "cola", 381.0),
        Product("00002", "chips", 62.0),
        Product("00003", "water", 538.0),
        Product("00004", "tea", 540.7),
        Product("00005", "gum", 130.0),
    ]
    placements = [
        ("00001", SHELF, [1]),
        ("00002", SHELF, [4, 5]),
        ("00005", SHELF, [6]),
        ("00003", SHELF, [8]),
        ("00004", SHELF, [8]),
    ]
    return build_planogram(products, placements, {SHELF: 9})


_stream = plate_stream  # 20 s of 9 plates


def test_single_pick() -> None:
    result = infer([_stream([(5.0, {1: -381.0})])], _planogram())
    assert not result.reviews
    [event] = result.events
    assert event.action is ShelfAction.PICK
    assert event.items == (("00001", 1),)
    assert event.confidence >= 0.9
    assert 5.0 <= (event.time - START).total_seconds() <= 7.0


def test_put_back_after_pick() -> None:
    result = infer([_stream([(3.0, {6: -130.0}), (9.0, {6: 130.0})])], _planogram())
    assert [(e.action, e.items) for e in result.events] == [
        (ShelfAction.PICK, (("00005", 1),)),
        (ShelfAction.PUT_BACK, (("00005", 1),)),
    ]


def test_product_spanning_two_plates_and_two_units() -> None:
    result = infer([_stream([(4.0, {4: -80.0, 5: -44.0})])], _planogram())
    assert [e.items for e in result.events] == [(("00002", 2),)]


def test_two_simultaneous_picks_on_neighbouring_plates() -> None:
    result = infer([_stream([(4.0, {4: -30.0, 5: -32.0, 6: -130.0})])], _planogram())
    assert not result.reviews
    assert [e.items for e in result.events] == [(("00002", 1), ("00005", 1))]


def test_resting_hand_that_fits_nothing_leaves_no_event() -> None:
    stream = _stream([], bumps=[(5.0, 8.0, {2: 100.0, 3: 71.0})])
    result = infer([stream], _planogram())
    assert result.events == () and result.reviews == ()


def test_steady_heavy_hand_nets_to_nothing_on_the_receipt() -> None:
    stream = _stream([], bumps=[(5.0, 8.0, {2: 700.0, 3: 500.0})])
    result = infer([stream], _planogram())
    net = receipt((e.action.value, e.items) for e in result.events)
    assert net == {}


def test_impossible_change_goes_to_review() -> None:
    result = infer([_stream([(5.0, {1: -250.0})])], _planogram())
    assert result.events == ()
    [item] = result.reviews
    assert item.reason is ReviewReason.UNEXPLAINED
    assert item.delta_g == pytest.approx(-250.0, abs=6.0)


def test_ambiguous_combination_goes_to_review() -> None:
    # water 538 g and tea 540.7 g share plate 8: weight alone cannot tell them apart.
    result = infer([_stream([(5.0, {8: -539.0})])], _planogram())
    assert result.events == ()
    [item] = result.reviews
    assert item.reason is ReviewReason.AMBIGUOUS
    assert {c for c in item.candidates} == {(("00003", 1),), (("00004", 1),)}
    assert item.confidence < 0.9


def test_quiet_shelf_with_drift_gives_nothing() -> None:
    stream = _stream([], seconds=60.0)
    drift = np.linspace(0.0, 4.0, stream.times_s.size)[:, None]
    drifting = ShelfWeights(SHELF, stream.plates, START, stream.times_s, stream.grams + drift)
    result = infer([drifting], _planogram())
    assert result.events == () and result.reviews == ()


def _twins() -> Planogram:
    products = [
        Product("00011", "tea original", 540.7),
        Product("00012", "tea peach", 540.7),
        Product("00013", "cola", 381.0),
        Product("00014", "diet cola", 371.5),
    ]
    placements = [
        ("00011", SHELF, [2]),
        ("00012", SHELF, [6]),
        ("00013", SHELF, [4]),
        ("00014", SHELF, [8]),
    ]
    return build_planogram(products, placements, {SHELF: 9})


def test_identical_weights_on_different_plates_are_told_apart_by_the_plate() -> None:
    result = infer([_stream([(3.0, {6: -540.7}), (9.0, {2: -540.7})])], _twins())
    assert not result.reviews
    assert [e.items for e in result.events] == [(("00012", 1),), (("00011", 1),)]


def test_pick_and_put_back_of_a_similar_product_cancelling_is_not_dropped_silently() -> None:
    # diet cola picked from plate 8 first; then one touch: cola off plate 4, diet cola put
    # down on plate 5: -381 + 371.5 nets -9.5 g over plates 4 and 5.
    stream = _stream([(2.0, {8: -371.5}), (8.0, {4: -381.0, 5: 371.5})])
    result = infer([stream], _twins())
    net = receipt((e.action.value, e.items) for e in result.events)
    assert net == {"00013": 1} or result.reviews


def test_item_moved_along_the_shelf_bills_nothing() -> None:
    # moved onto a plate that stocks nothing: no event; staff may be asked to look.
    result = infer([_stream([(5.0, {4: -381.0, 5: 381.0})])], _twins())
    assert result.events == ()
    assert all(r.reason is ReviewReason.TRANSIENT for r in result.reviews)


def test_put_back_of_a_held_product_on_a_similar_products_plate_is_not_billed_wrong() -> None:
    # diet cola (371.5 g) picked, then put down on the cola's plate (cola 381 g).
    stream = _stream([(2.0, {8: -371.5}), (8.0, {4: 371.5})])
    result = infer([stream], _twins())
    net = receipt((e.action.value, e.items) for e in result.events)
    assert result.reviews or net == {}
