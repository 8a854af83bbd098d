"""The open-loop arrival schedule and max-rate search of benchmarks/bench_exit.py."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from bench_exit import (  # noqa: E402
    MAX_TRIALS_DOUBLING,
    TARGET_P99_MS,
    Trial,
    poisson_offsets,
    search_max_rate,
)


def _trial_with_capacity(capacity: float, asked: list[float]) -> Callable[[float], Trial]:
    """A fake service whose p99 stays within the target up to ``capacity`` exits/s."""

    def trial(rate: float) -> Trial:
        asked.append(rate)
        p99 = TARGET_P99_MS / 2 if rate <= capacity else TARGET_P99_MS * 4
        return Trial(rate, rate, 100, 10.0, p99, p99, 1.0, 0, None)

    return trial


def test_search_doubles_then_bisects_to_the_highest_rate_within_target() -> None:
    asked: list[float] = []
    trials, best = search_max_rate(_trial_with_capacity(130.0, asked), 25.0, steps=3)
    assert asked == [25.0, 50.0, 100.0, 200.0, 150.0, 125.0, 137.5]
    assert best == 125.0 and [t.rate_per_s for t in trials] == asked


def test_search_reports_none_when_even_the_first_rate_is_too_high() -> None:
    asked: list[float] = []
    trials, best = search_max_rate(_trial_with_capacity(10.0, asked), 25.0, steps=3)
    assert best is None and asked == [25.0] and not trials[0].within_target


def test_search_stops_doubling_at_its_bound() -> None:
    asked: list[float] = []
    _, best = search_max_rate(_trial_with_capacity(1e9, asked), 1.0, steps=3)
    assert len(asked) == MAX_TRIALS_DOUBLING + 1 and best == 2.0 ** MAX_TRIALS_DOUBLING


def test_a_failed_exit_is_never_within_target() -> None:
    assert not Trial(5.0, 5.0, 10, 1.0, 2.0, 3.0, 0.0, 1, None).within_target


def test_poisson_offsets_increase_at_the_asked_rate() -> None:
    offsets = poisson_offsets(50.0, 20_000, random.Random(1))
    assert all(b > a for a, b in zip(offsets, offsets[1:], strict=False))
    assert len(offsets) / offsets[-1] == pytest.approx(50.0, rel=0.03)
    with pytest.raises(ValueError, match="positive"):
        poisson_offsets(0.0, 5, random.Random(1))
