"""`storefront identity bench` machinery on a small real gallery (Tongji + fillers)."""

from __future__ import annotations

from pathlib import Path

from identity.scale_bench import load_data, run


def test_bench_on_a_small_gallery(tongji_dir: Path) -> None:
    data = load_data(tongji_dir, real_palms=12, probes_per_palm=1, source_palms=8)
    assert len(data.gallery) == 12 and len(data.probes) == 12 and len(data.sources) == 160
    report = run(data, 3000, seed=1)
    assert report["gallery"] == 3000 and report["coarse_stage"] == "full"
    assert report["misidentified_above_threshold"] == 0
    assert report["shortlist_recall"] == 1.0
    assert report["probes_identifiable_exhaustive"] >= 10
    assert 0 < report["identify_ms_p50"] <= report["identify_ms_p99"]
    assert 380 < report["bytes_per_palm_arrays"] < 1000
    assert report["restart_s_snapshot"] >= 0 and report["snapshot_bytes_per_palm"] > 384
