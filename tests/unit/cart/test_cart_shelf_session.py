"""Shelf inference with the session's history: what the shopper holds, what the receipt holds,
changes that undo each other, and units displaced along a shelf (20 Hz, seeded noise)."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
from shelf_streams import SHELF, plate_stream

from cart.shelf.candidates import SessionContext, candidates
from cart.shelf.detect import WeightChange
from cart.shelf.evaluation import receipt
from cart.shelf.inference import InferenceResult, ShelfAction, infer
from cart.shelf.params import InferenceParams
from cart.shelf.planogram import Planogram, Product, ShelfId, build_planogram
from cart.shelf.review import ReviewReason
from cart.shelf.weights import ShelfWeights


def _planogram(placements: dict[str, list[int]], weights: dict[str, float]) -> Planogram:
    products = [Product(g, f"product {g}", w) for g, w in weights.items()]
    return build_planogram(products, [(g, SHELF, q) for g, q in placements.items()], {SHELF: 9})


_stream = partial(plate_stream, seconds=30.0)


def _net(result: InferenceResult) -> dict[str, int]:
    return receipt((e.action.value, e.items) for e in result.events)


def test_held_units_are_a_posterior_expectation() -> None:
    context = SessionContext()
    context.add((("A", 1),), 0.98)
    context.add((("B", 1),), 0.02)
    assert context.holds("A") == pytest.approx(0.98)
    assert context.holds("B") == pytest.approx(0.02)
    context.remove((("A", 1),), 1.0)
    assert context.holds("A") == 0.0 and "A" not in context.held
    context.add((("C", 2),), 1.0)
    assert context.holds("C") == 1.0


def test_receipt_lines_never_go_negative() -> None:
    context = SessionContext()
    assert not context.billable((("A", 1),))
    context.bill((("A", 2),), 1)
    assert context.billable((("A", 2),)) and not context.billable((("A", 3),))
    context.bill((("A", 1),), -1)
    assert context.billable((("A", 1),)) and not context.billable((("A", 2),))


def test_a_product_put_back_no_longer_competes_with_the_next_put_back() -> None:
    # A (145.0 g) picked and put back on plate 2; then B (145.3 g) picked and put back on
    # plate 7. A is no longer held, so B's put-back is B without doubt.
    planogram = _planogram({"A": [2], "B": [7]}, {"A": 145.0, "B": 145.3})
    stream = _stream(
        [(2.0, {2: -145.0}), (7.0, {2: 145.0}), (12.0, {7: -145.3}), (17.0, {7: 145.3})]
    )
    result = infer([stream], planogram)
    assert not result.reviews
    assert [(e.action, e.items) for e in result.events] == [
        (ShelfAction.PICK, (("A", 1),)),
        (ShelfAction.PUT_BACK, (("A", 1),)),
        (ShelfAction.PICK, (("B", 1),)),
        (ShelfAction.PUT_BACK, (("B", 1),)),
    ]


def test_a_hand_resting_with_a_products_weight_bills_nothing() -> None:
    # 381 g set down on the cola's plate and lifted 3 s later: a put-back the shopper cannot
    # have made (nothing was picked) and a pick of the same weight. Neither side is billed;
    # staff see one transient.
    planogram = _planogram({"cola": [1], "gum": [6]}, {"cola": 381.0, "gum": 130.0})
    result = infer([_stream([], bumps=[(5.0, 8.0, {1: 381.0})])], planogram)
    assert result.events == ()
    [item] = result.reviews
    assert item.reason is ReviewReason.TRANSIENT
    assert item.candidates[0] == (("cola", 1),)


def test_put_back_of_a_product_never_picked_is_not_credited() -> None:
    planogram = _planogram({"cola": [1], "gum": [6]}, {"cola": 381.0, "gum": 130.0})
    result = infer([_stream([(5.0, {1: 381.0})])], planogram)
    assert result.events == ()
    [item] = result.reviews
    assert item.reason is ReviewReason.NOT_BILLED
    assert item.candidates[0] == (("cola", 1),)


def test_two_picks_of_one_product_in_a_row_are_two_picks() -> None:
    planogram = _planogram({"gum": [6]}, {"gum": 130.0})
    result = infer([_stream([(3.0, {6: -130.0}), (9.0, {6: -130.0})])], planogram)
    assert not result.reviews
    assert _net(result) == {"gum": 2}


def test_unit_two_plates_from_its_facing_is_told_from_a_distant_twin() -> None:
    # cola (381 g) on plate 1, cola zero (383 g) on plate 9, in a store of 50 products: a
    # 381 g pick from plate 3 is a cola unit that drifted sideways, not one from the far end.
    weights = {"cola": 381.0, "zero": 383.0} | {f"f{i:02}": 1000.0 + 10 * i for i in range(48)}
    planogram = _planogram({"cola": [1], "zero": [9]}, weights)
    result = infer([_stream([(5.0, {3: -381.0})])], planogram)
    assert not result.reviews
    [event] = result.events
    assert event.items == (("cola", 1),) and event.misplaced


def test_hand_pressing_before_a_pick_is_one_pick() -> None:
    # a hand rests on plates 6-7 (+250 g) and lifts as the gum is taken from plate 6.
    planogram = _planogram({"gum": [6], "cola": [1]}, {"gum": 130.0, "cola": 381.0})
    stream = _stream([(8.0, {6: -130.0})], bumps=[(4.0, 8.3, {6: 150.0, 7: 100.0})])
    result = infer([stream], planogram)
    assert _net(result) == {"gum": 1}


_FILLERS = {f"f{i:02}": 100.0 + 3.0 * i for i in range(48)}
"""Products stocked nowhere on the test shelves, far from the tests' weights: a store of 50."""


def test_a_pick_far_from_a_facing_is_less_likely_than_a_put_back_there() -> None:
    # a product stocked on plate 7 of the shelf, a change on plate 5 (2 plates away): units
    # are put down anywhere, but taken where they are (AiFi annotations, see params).
    planogram = _planogram({"cola": [7]}, {"cola": 381.0} | _FILLERS)
    params = InferenceParams()
    for delta, decay in ((-381.0, params.off_facing_pick_decay), (381.0, params.off_facing_decay)):
        change = WeightChange(SHELF, (5,), delta, 1.0, 2.0, ((5, delta),), 1.0)
        [cola] = [c for c in candidates(change, planogram, params) if c.product.gtin == "cola"]
        assert cola.misplaced and cola.alone and cola.plates is None
        assert cola.prior == pytest.approx(params.off_facing_prior * decay)
    assert params.off_facing_pick_decay < params.off_facing_decay


def test_pick_two_plates_off_its_facing_is_told_from_a_twin_five_plates_away() -> None:
    # 1059.67 g water on plate 6, 1064 g water on plate 9: 1059.7 g taken from plate 4 is
    # the near one, confidently; with the put-backs' gentler decay it stays in review.
    weights = {"near": 1059.67, "far": 1064.0} | _FILLERS
    planogram = _planogram({"near": [6], "far": [9]}, weights)
    stream = _stream([(5.0, {4: -1059.7})])
    result = infer([stream], planogram)
    assert not result.reviews
    [event] = result.events
    assert event.items == (("near", 1),) and event.misplaced and event.confidence >= 0.9
    gentle = infer([stream], planogram, InferenceParams(off_facing_pick_decay=0.5))
    assert gentle.events == ()
    [item] = gentle.reviews
    assert item.reason is ReviewReason.AMBIGUOUS and item.candidates[0] == (("near", 1),)


OTHER = ShelfId(2, 1)


def _elsewhere(stream: ShelfWeights) -> ShelfWeights:
    """``stream`` as the weights of shelf ``OTHER``."""
    return dataclasses.replace(stream, shelf=OTHER)


def _two_shelves() -> Planogram:
    # 1 l water (1059.67 g) stocked on another shelf; 0.5 l water (538 g) on plate 6 here.
    products = [Product(g, g, w) for g, w in ({"litre": 1059.67, "half": 538.0} | _FILLERS).items()]
    return build_planogram(
        products, [("litre", OTHER, [6]), ("half", SHELF, [6])], {SHELF: 9, OTHER: 9}
    )


def test_a_unit_put_down_then_a_pick_of_that_weight_next_to_it_is_not_billed_blind() -> None:
    # the shopper takes a 1 l bottle elsewhere, puts it down on plate 7 here, then takes two
    # 0.5 l bottles (1071.6 g, drawn 0.4 % under nominal) from plate 6 while plate 7 stays
    # put. Weight alone prefers the two 0.5 l bottles, but the 1 l bottle just put down next
    # to it may have been moved onto plate 6: the pick goes to review, never to the bill as
    # the wrong product (AiFi BASELINE-6, seed 1).
    planogram = _two_shelves()
    other = _elsewhere(_stream([(2.0, {6: -1059.67})]))
    here = _stream([(8.0, {7: 1059.67}), (15.0, {6: -1071.6})])
    result = infer([other, here], planogram)
    billed = _net(result)
    assert billed in ({"half": 2}, {})
    if billed == {}:
        [item] = result.reviews
        assert {("half", 2)} <= {c[0] for c in item.candidates}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("look_alike_g", [0.0, 6.0])
def test_a_unit_put_down_that_slides_to_the_next_plate_is_not_billed_as_a_look_alike(
    seed: int, look_alike_g: float
) -> None:
    # reviewer's scenario (2026-11-30): a 1 l bottle stocked elsewhere is put down on plate 7,
    # slides (or is nudged) onto plate 8 in one quick move, and is taken again from plate 8.
    # A look-alike stocked on plate 9 explains both halves of the slide, so the move itself
    # may go unseen. Billing the look-alike would be a silent wrong charge: the receipt must
    # be the bottle, or the change must wait in review.
    weights = {"litre": 1059.67, "twin": 1059.67 + look_alike_g} | _FILLERS
    products = [Product(g, g, w) for g, w in weights.items()]
    planogram = build_planogram(
        products, [("litre", OTHER, [6]), ("twin", SHELF, [9])], {SHELF: 9, OTHER: 9}
    )
    other = _elsewhere(_stream([(2.0, {6: -1059.67})], seed=seed))
    here = _stream(
        [(6.0, {7: 1059.67}), (14.0, {7: -1059.67, 8: 1059.67}), (22.0, {8: -1059.67})],
        seed=seed,
    )
    result = infer([other, here], planogram)
    billed = _net(result)
    assert "twin" not in billed or result.reviews
    assert billed == {"litre": 1} or result.reviews


def test_a_unit_put_down_off_its_facing_can_be_taken_again_there() -> None:
    planogram = _two_shelves()
    other = _elsewhere(_stream([(2.0, {6: -1059.67})]))
    here = _stream([(8.0, {7: 1059.67}), (15.0, {7: -1059.67})])
    result = infer([other, here], planogram)
    assert not result.reviews
    assert [(e.action, e.items) for e in result.events][1:] == [
        (ShelfAction.PUT_BACK, (("litre", 1),)),
        (ShelfAction.PICK, (("litre", 1),)),
    ]
    assert _net(result) == {"litre": 1}
