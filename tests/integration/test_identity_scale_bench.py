"""`storefront identity bench` machinery on a small real gallery (Tongji + fillers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from identity import params
from identity.scale_bench import BenchData, load_data, round_seconds, run


@pytest.fixture(scope="module")
def data(tongji_dir: Path) -> BenchData:
    return load_data(tongji_dir, real_palms=12, probes_per_palm=1, source_palms=8)


def _same_as_live_service(report: dict[str, Any]) -> None:
    """What holds whichever first stage: scores of the protected index equal the clear
    scores, and the snapshot restores protected rows that answer like the original."""
    assert report["rescore_max_abs_error_vs_clear"] == pytest.approx(0.0, abs=1e-9)
    assert report["snapshot_search_identical"] is True
    assert report["snapshot_restored_templates"] == report["gallery"]
    assert report["misidentified"] == 0
    # the fused second stage: one template per real palm, every probe's own palm among the
    # re-scored subjects; nearly all are identified at the gallery's decision threshold
    assert report["rescore_subjects"] == params.RESCORE_SUBJECTS
    assert 0 < report["rescore_ms_p50"] <= report["rescore_ms_p99"]
    assert report["rescore_ms_p50"] < report["identify_ms_p50"]
    assert report["probes_identified"] >= report["probes"] - 2
    assert report["bytes_per_person_key"] == 60  # 12-byte nonce + 32-byte key + 16-byte tag
    assert 0 < report["identify_ms_p50"] <= report["identify_ms_p99"]
    # times keep 4 significant digits: a small gallery's restart is not rounded to 0
    for key in ("restart_s_snapshot", "restart_s_database", "filler_build_s"):
        assert report[key] > 0 and report[key] == round_seconds(report[key])
    _staged_search(report)


def _staged_search(report: dict[str, Any]) -> None:
    """The staged search's own measures: every probe counted once in some stage, the
    early fraction matching the stage counts, and no early answer deciding otherwise
    than the same search run to its last stage."""
    stages = {int(k): v for k, v in report["search_stages_run"].items()}
    assert sum(stages.values()) == report["probes"] and set(stages) <= {1, 2, 3}
    early = sum(v for k, v in stages.items() if k < 3)
    assert report["early_accept_fraction"] == pytest.approx(early / report["probes"], abs=1e-4)
    assert report["early_accept_checked_against_all_stages"] == early
    assert report["early_accept_decision_changed"] == 0
    assert report["early_accept_top_subject_changed"] == 0
    # never below the identify threshold
    assert report["early_accept_score"] >= params.IDENTIFY_THRESHOLD
    if early:
        assert 0 < report["identify_ms_p50_early"] <= report["identify_ms_p99_early"]
    assert report["probes_recalled"] == round(
        report["shortlist_recall"] * report["probes_identifiable_exhaustive"])


def test_bench_on_a_small_gallery(data: BenchData) -> None:
    assert len(data.gallery) == 12 and len(data.probes) == 12 and len(data.sources) == 160
    report = run(data, 3000, seed=1)
    assert report["gallery"] == 3000 and report["coarse_stage"] == "full"
    assert report["shortlist_recall"] == 1.0
    assert report["probes_identifiable_exhaustive"] >= 10
    _same_as_live_service(report)
    # full codes in FAISS and in the rows, plus the protected pooled column (96 bytes)
    assert 384 + 384 + 96 < report["bytes_per_palm_arrays"] < 1000
    # protected code + mask + pooled code per palm, then the ids
    assert report["snapshot_bytes_per_palm"] > 384 + 128 + 96


def test_bench_with_the_pooled_first_stage(data: BenchData) -> None:
    report = run(data, 3000, seed=1, coarse_from=1000)
    assert report["coarse_stage"] == "pooled"
    assert report["shortlist_recall"] >= 0.9
    _same_as_live_service(report)
    # pooled codes live only in FAISS once coarse: code rows + pooled FAISS codes
    assert 384 + 96 < report["bytes_per_palm_arrays"] < 384 + 384
    assert report["snapshot_bytes_per_palm"] > 384 + 128 + 96
