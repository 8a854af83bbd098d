"""The exit benchmarks run end to end at a small size (the full runs are in
benchmarks/README.md): every exit is answered (signed as the store's gate), and under
chaos no session is charged twice, charged without a receipt, or left unresolved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str, out: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_bench_exit_answers_every_exit(tmp_path: Path) -> None:
    report = _run("bench_exit.py", "--concurrent", "8", "--rounds", "1", "--arrival-rate", "20",
                  "--open-loop-exits", "16", out=tmp_path / "exit.json")
    assert report["non_200"] == 0 and report["exits_timed"] == 8
    assert 0 < float(str(report["exit_to_receipt_ms_p50"])) <= float(
        str(report["exit_to_receipt_ms_p99"]))
    assert report["burst_target_met"] == (
        float(str(report["exit_to_receipt_ms_p99"])) <= float(str(report["target_p99_ms"])))
    # The stack's floor: the same burst sent to GET /health, answered without any exit work.
    assert 0 < float(str(report["floor_health_burst_ms_p50"])) <= float(
        str(report["floor_health_burst_ms_p99"]))
    # The open loop: 8 sessions stay open while 16 exit at Poisson arrivals of 20/s.
    assert report["open_loop_rate_per_s"] == 20.0 and report["open_loop_non_200"] == 0
    assert report["open_loop_open_sessions"] == 8
    trials = report["open_loop_trials"]
    assert isinstance(trials, list) and len(trials) == 1 and trials[0]["exits"] == 16
    assert 0 < float(str(report["open_loop_ms_p50"])) <= float(str(report["open_loop_ms_p99"]))


def test_chaos_checkout_keeps_every_invariant(tmp_path: Path) -> None:
    report = _run("chaos_checkout.py", "--exits", "30", "--kill-min-s", "0.5",
                  "--kill-max-s", "1.5", out=tmp_path / "chaos.json")
    assert report["double_captures"] == report["lost_captures"] == report["unresolved"] == 0
    assert report["exits"] == 30 and report["open_holds_left"] == 0
    assert int(str(report["settled"])) + int(str(report["staffed"])) == 30
