"""AiFi replay at a small size: real ground truth, simulated plates, scored inference."""

from __future__ import annotations

from pathlib import Path

import pytest

from cart.shelf.aifi import AifiStore, AifiTrip, load_aifi
from cart.shelf.replay import replay
from cart.shelf.twins import undecidable, weight_twins

pytestmark = pytest.mark.realdata


def test_aifi_store_loads(data_dir: Path) -> None:
    store = load_aifi(data_dir / "retail" / "aifi-autocheckout")
    assert len(store.trips) == 46
    assert sum(len(t.events) for t in store.trips) == 237
    assert store.planogram.plates_per_shelf and len(store.planogram.shelves()) == 30
    assert all(isinstance(g, str) for g in store.planogram.products)


def test_replay_small(data_dir: Path) -> None:
    store = load_aifi(data_dir / "retail" / "aifi-autocheckout")
    summary = replay(store, seed=0, trips=12).summary()
    assert summary["trips"] == 12
    # measured at seed 0 on these trips: cps-test-9 holds a unit a twin on the same plates
    # matches by weight, so it cannot be exact; cps-test-10 (a pick 1 plate off its facing,
    # next to 557 and 563 g products 3 and 5 plates away) is exact since picks off their
    # facing decay by 0.3 per plate. No wrong trip may go unflagged.
    assert summary["wrong_trips_unflagged"] == 0
    assert summary["trips_exact"] == pytest.approx(11 / 12, abs=1e-4)  # the upper bound
    assert summary["trips_exact_decidable"] == 1.0
    assert summary["trips_ambiguous_by_weight"] == 1
    assert summary["trips_same_plate_twins"] == 1
    assert summary["trips_exact_upper_bound"] == pytest.approx(11 / 12, abs=1e-4)
    assert summary["f1"] >= 0.9


def test_weight_twins_of_the_store(data_dir: Path) -> None:
    """The twins found in the ground truth: 6 trips with a twin stocked on the same plates,
    4 more with a misplaced unit whose twin is as plausible (stocked as near, or held)."""
    store = load_aifi(data_dir / "retail" / "aifi-autocheckout")
    reasons = {t.name: {x.reason for x in weight_twins(t, store.planogram)} for t in store.trips}
    same = {n for n, r in reasons.items() if "same_plates" in r}
    other = {n for n, r in reasons.items() if r and n not in same}
    assert same == {
        "cps-test-9", "ALL-SIMPLE-CHIP-1", "cps-test-21", "cps-test-24", "BASELINE-11",
        "BASELINE-20",
    }  # fmt: skip
    assert other == {"cps-test-23", "BASELINE-5", "BASELINE-6", "BASELINE-12"}
    chips = weight_twins(_trip(store, "cps-test-9"), store.planogram)
    assert {(x.gtin, x.other) for x in chips} == {("084114033338", "084114033000")}
    assert all(abs(x.weight_g - x.other_weight_g) <= x.sigma_g for x in chips)


def test_receipts_weight_cannot_decide(data_dir: Path) -> None:
    """Trips whose exact receipt no weight-only inference can produce with confidence: 5 with
    a billed unit twinned on its very plates, 3 more with a twin as plausible elsewhere (or a
    put-back that may be either of two held twins), 1 with an unidentified unit, 1 (also
    twinned) whose true receipt credits units never picked. A chips pick that is put back
    again (ALL-SIMPLE-CHIP-1) and a put-back and re-pick on a plate no sensor has
    (BASELINE-6) leave the receipt decidable."""
    store = load_aifi(data_dir / "retail" / "aifi-autocheckout")
    why = {t.name: undecidable(t, store.planogram) for t in store.trips}
    same = {n for n, r in why.items() if "same_plates" in r}
    assert same == {"cps-test-9", "cps-test-21", "cps-test-24", "BASELINE-11", "BASELINE-20"}
    assert {n for n, r in why.items() if r and n not in same} == {
        "cps-test-23",
        "BASELINE-5",
        "BASELINE-12",
    }
    assert not why["ALL-SIMPLE-CHIP-1"] and not why["BASELINE-6"]
    summary = replay(store, seed=0).summary()
    assert summary["trips_unidentified_items"] == 1
    assert summary["trips_negative_receipt"] == 1
    assert summary["trips_decidable"] == 37
    assert summary["trips_exact_upper_bound"] == pytest.approx(37 / 46, abs=1e-4)


def _trip(store: AifiStore, name: str) -> AifiTrip:
    return next(t for t in store.trips if t.name == name)
