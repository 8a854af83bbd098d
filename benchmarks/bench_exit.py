"""Exit-to-receipt latency with many shoppers leaving at once (issue 6).

Opens sessions (entry hold placed, baskets priced with the built-in catalogue),
starts ``storefront serve`` on a loopback port (file SQLite database, simulated
processor whose state is a file, no injected faults), then in each round POSTs
``--concurrent`` exits at the same moment and times each from request to receipt
(the HTTP answer: priced, captured against the hold, receipt issued).

    python benchmarks/bench_exit.py --concurrent 200 --json benchmarks/results/bench_exit.json

Target: exit_to_receipt_ms_p99 <= 150.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import print_and_save  # noqa: E402
from chaos_checkout import (  # noqa: E402
    GateSigner,
    Service,
    free_port,
    service_env,
    set_up_sessions,
)


async def _round(base: str, sessions: list[str], gate: GateSigner) -> tuple[list[float], int]:
    """Exit every session at once (signed by the gate); returns per-exit milliseconds and
    non-200 answers."""
    limits = httpx.Limits(max_connections=len(sessions), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(session_id: str) -> tuple[float, int]:
            headers = gate.exit_headers(session_id)
            started = time.perf_counter()
            answer = await client.post(f"{base}/sessions/{session_id}/exit", headers=headers)
            return (time.perf_counter() - started) * 1000.0, answer.status_code

        results = await asyncio.gather(*(one(s) for s in sessions))
    return [ms for ms, _ in results], sum(code != 200 for _, code in results)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, serve, time the rounds; returns the report."""
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
        folder = Path(tmp)
        env = service_env(folder, fault_rate=0.0, seed=args.seed, hold=args.hold,
                          latency_ms=args.processor_latency_ms)
        env["STOREFRONT_PAYMENT_DECLINE_RATE"] = "0"
        sessions, _refused, gate = set_up_sessions(env, args.concurrent * (args.rounds + 1),
                                                   rng, args.hold)
        service = Service(env, free_port(), folder / "service.log")
        service.start()
        base = f"http://127.0.0.1:{service.port}"
        try:
            load_before = os.getloadavg()
            asyncio.run(_round(base, sessions[:args.concurrent], gate))  # warm-up, not counted
            timings: list[float] = []
            failures = 0
            for r in range(1, args.rounds + 1):
                batch = sessions[r * args.concurrent:(r + 1) * args.concurrent]
                ms, bad = asyncio.run(_round(base, batch, gate))
                timings += ms
                failures += bad
            load_after = os.getloadavg()
        finally:
            service.kill()
    values = np.asarray(timings)
    return {"exit_to_receipt_ms_p50": round(float(np.percentile(values, 50)), 1),
            "exit_to_receipt_ms_p99": round(float(np.percentile(values, 99)), 1),
            "exit_to_receipt_ms_max": round(float(values.max()), 1),
            "concurrent": args.concurrent, "rounds": args.rounds, "exits_timed": len(values),
            "non_200": failures, "processor_latency_ms": args.processor_latency_ms,
            "cpus": os.cpu_count(), "loadavg_1m_before_after": [load_before[0], load_after[0]],
            "database": "sqlite file", "seed": args.seed}


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=int, default=5000, help="entry hold, minor units")
    parser.add_argument("--processor-latency-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    report = run(args)
    print_and_save(report, args.json)
    sys.exit(1 if report["non_200"] else 0)  # a failed exit is not a latency


if __name__ == "__main__":
    main()
