"""AiFi replay at a small size: real ground truth, simulated plates, scored inference."""

from __future__ import annotations

from pathlib import Path

import pytest

from cart.shelf.aifi import load_aifi
from cart.shelf.replay import replay

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
    # measured at seed 0 on these trips: trips_exact 0.667 (4 of 12 trips hold a unit a
    # weight-only system cannot tell from a twin), trips_exact_decidable 0.75 (6 of 8), f1
    # 0.885. The 0.95 target is not reached (report); no wrong trip may go unflagged.
    assert summary["wrong_trips_unflagged"] == 0
    assert summary["trips_exact"] >= 0.65
    assert summary["trips_exact_decidable"] >= 0.75
    assert summary["trips_ambiguous_by_weight"] == 4
    assert summary["f1"] >= 0.85
