"""Exit-to-receipt latency with 200 concurrent sessions (issue 6): a same-instant burst,
and an open loop of exits arriving over time.

Opens sessions (entry hold placed, baskets priced with the built-in catalogue),
starts ``storefront serve`` on a loopback port (one process, file SQLite database,
simulated processor whose state is a file, no injected faults), then times each
exit from request to receipt (the HTTP answer: priced, captured against the hold,
receipt issued), signed as the store's exit gate.

Burst (``exit_to_receipt_ms_p50/p99``): in each of ``--rounds`` rounds,
``--concurrent`` exits are POSTed at the same moment (after one warm-up round).

Open loop (``--arrival-rate``, ``--find-max-rate``): ``--concurrent`` sessions stay
open in the store throughout, and on top of them ``--open-loop-exits`` more sessions
exit as a Poisson process at the stated rate (exits per second), each sent at its
arrival time whether or not earlier exits have been answered. Latency is counted
from the scheduled arrival (a late send counts against the service, no coordinated
omission). ``--find-max-rate`` doubles the rate from the first ``--arrival-rate``
(default 25/s) while p99 stays within the target, then bisects ``--search-steps``
times between the last rate within it and the first beyond it.

``server_cpu_ms_per_exit``: CPU time of the service process (user + system, from
/proc; Linux only) per exit: the serialised work a burst queues behind.

Floor of the stack (``floor_health_burst_ms_p50/p99``, unless ``--no-floor``): the same
burst rounds sent to ``GET /health`` of the same service, the cheapest request it answers
(no database, no signature; a plain endpoint run in the same thread pool as the exit),
with the same client and a new connection per request. What the HTTP server, the framework
and the client alone cost on this machine at this concurrency: no exit burst can be
answered faster than that.

    python benchmarks/bench_exit.py --concurrent 200 --json benchmarks/results/bench_exit.json
    python benchmarks/bench_exit.py --concurrent 200 --find-max-rate --json out.json

Target: p99 <= 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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

TARGET_P99_MS = 150.0
MAX_TRIALS_DOUBLING = 6  # 25/s doubled 6 times is 1,600/s, beyond any 2-core service
WARM_UP = 20  # exits before an open loop that no burst precedes (not counted)


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


async def _health_round(base: str, concurrent: int) -> list[float]:
    """``concurrent`` simultaneous ``GET /health`` requests, each on a new connection as the
    exits are; returns per-request milliseconds. Raises RuntimeError on a non-200 answer."""
    limits = httpx.Limits(max_connections=concurrent, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one() -> float:
            started = time.perf_counter()
            answer = await client.get(f"{base}/health")
            if answer.status_code != 200:
                raise RuntimeError(f"GET /health answered {answer.status_code}")
            return (time.perf_counter() - started) * 1000.0

        return list(await asyncio.gather(*(one() for _ in range(concurrent))))


def poisson_offsets(rate_per_s: float, count: int, rng: random.Random) -> list[float]:
    """Arrival times (seconds from the start) of ``count`` events of a Poisson process of
    ``rate_per_s``: cumulative exponential gaps. Raises ValueError for a rate <= 0."""
    if rate_per_s <= 0:
        raise ValueError("the arrival rate must be positive")
    offsets, at = [], 0.0
    for _ in range(count):
        at += rng.expovariate(rate_per_s)
        offsets.append(at)
    return offsets


async def _open_loop(base: str, sessions: list[str], offsets: list[float],
                     gate: GateSigner) -> tuple[list[float], list[float], int]:
    """Send exit i at ``offsets[i]`` seconds from now, whatever is still unanswered.

    Returns milliseconds from each scheduled arrival to its answer, milliseconds each
    send started late (the client's own lag), and the number of non-200 answers.
    """
    limits = httpx.Limits(max_connections=len(sessions), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter() + 0.05  # time to schedule every task first

        async def one(session_id: str, offset: float) -> tuple[float, float, int]:
            due = start + offset
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            lag = time.perf_counter() - due
            answer = await client.post(f"{base}/sessions/{session_id}/exit",
                                       headers=gate.exit_headers(session_id))
            return (time.perf_counter() - due) * 1000.0, lag * 1000.0, answer.status_code

        results = await asyncio.gather(*(one(s, o) for s, o in zip(sessions, offsets,
                                                                    strict=True)))
    return ([ms for ms, _, _ in results], [lag for _, lag, _ in results],
            sum(code != 200 for _, _, code in results))


@dataclass(frozen=True)
class Trial:
    """One open-loop run: the rate asked for, the rate achieved (exits / span of the
    arrivals), latency percentiles (ms from scheduled arrival to answer), the largest
    client send lag (ms), non-200 answers and service CPU per exit (ms; None off Linux)."""

    rate_per_s: float
    achieved_rate_per_s: float
    exits: int
    ms_p50: float
    ms_p99: float
    ms_max: float
    client_lag_ms_max: float
    non_200: int
    server_cpu_ms_per_exit: float | None

    @property
    def within_target(self) -> bool:
        """True when every exit was answered 200 and p99 <= the target."""
        return self.non_200 == 0 and self.ms_p99 <= TARGET_P99_MS


def search_max_rate(trial: Callable[[float], Trial], start: float,
                    steps: int) -> tuple[list[Trial], float | None]:
    """The highest rate whose trial stays within the target: ``start`` doubled while
    within it (at most ``MAX_TRIALS_DOUBLING`` times), then ``steps`` bisections between
    the last rate within and the first beyond. Returns every trial in the order run and
    that rate (None when even ``start`` is beyond the target)."""
    trials: list[Trial] = []
    good: float | None = None
    bad: float | None = None
    rate = start
    for _ in range(MAX_TRIALS_DOUBLING + 1):
        result = trial(rate)
        trials.append(result)
        if not result.within_target:
            bad = rate
            break
        good, rate = rate, rate * 2
    if good is None or bad is None:
        return trials, good
    for _ in range(steps):
        rate = round((good + bad) / 2, 1)
        if rate in (good, bad):
            break
        result = trial(rate)
        trials.append(result)
        if result.within_target:
            good = rate
        else:
            bad = rate
    return trials, good


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_exit(before: float | None, after: float | None, exits: int) -> float | None:
    if before is None or after is None or exits == 0:
        return None
    return round((after - before) * 1000.0 / exits, 2)


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 1)


class Bench:
    """The running service, its pool of open sessions and the gate that signs exits."""

    def __init__(self, service: Service, sessions: list[str], gate: GateSigner,
                 rng: random.Random) -> None:
        self.service, self.sessions, self.gate, self.rng = service, sessions, gate, rng
        self.base = f"http://127.0.0.1:{service.port}"

    def take(self, count: int) -> list[str]:
        """The next ``count`` sessions not exited yet. Raises RuntimeError when short."""
        if count > len(self.sessions):
            raise RuntimeError("not enough open sessions set up for this run")
        taken, self.sessions = self.sessions[:count], self.sessions[count:]
        return taken

    def cpu(self) -> float | None:
        """CPU seconds of the service process so far."""
        proc = self.service.proc
        return None if proc is None else _process_cpu_s(proc.pid)

    def burst(self, concurrent: int, rounds: int) -> tuple[list[float], int, float | None]:
        """A warm-up round, then ``rounds`` rounds of ``concurrent`` simultaneous exits;
        returns the timings (ms), the non-200 answers and service CPU per exit (ms)."""
        asyncio.run(_round(self.base, self.take(concurrent), self.gate))  # not counted
        timings: list[float] = []
        failures = 0
        cpu_before = self.cpu()
        for _ in range(rounds):
            ms, bad = asyncio.run(_round(self.base, self.take(concurrent), self.gate))
            timings += ms
            failures += bad
        return timings, failures, _cpu_per_exit(cpu_before, self.cpu(), len(timings))

    def health_burst(self, concurrent: int, rounds: int) -> tuple[list[float], float | None]:
        """The burst's shape sent to ``GET /health`` (a warm-up round, then ``rounds``
        rounds of ``concurrent``): timings (ms) and service CPU per request (ms)."""
        asyncio.run(_health_round(self.base, concurrent))  # not counted
        timings: list[float] = []
        cpu_before = self.cpu()
        for _ in range(rounds):
            timings += asyncio.run(_health_round(self.base, concurrent))
        return timings, _cpu_per_exit(cpu_before, self.cpu(), len(timings))

    def open_loop(self, rate_per_s: float, exits: int) -> Trial:
        """``exits`` exits arriving as a Poisson process of ``rate_per_s``."""
        offsets = poisson_offsets(rate_per_s, exits, self.rng)
        cpu_before = self.cpu()
        ms, lag, bad = asyncio.run(_open_loop(self.base, self.take(exits), offsets, self.gate))
        return Trial(rate_per_s, round(exits / offsets[-1], 1), exits, _percentile(ms, 50),
                     _percentile(ms, 99), round(max(ms), 1), round(max(lag), 1), bad,
                     _cpu_per_exit(cpu_before, self.cpu(), exits))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, serve, time the burst rounds and the open-loop trials; returns the report."""
    rng = random.Random(args.seed)
    rates: list[float] = args.arrival_rate or ([25.0] if args.find_max_rate else [])
    if args.find_max_rate:
        trials_at_most = MAX_TRIALS_DOUBLING + 1 + args.search_steps
    else:
        trials_at_most = len(rates)
    # A burst starts with a warm-up round; an open loop alone with WARM_UP exits.
    burst_sessions = args.concurrent * (args.rounds + 1) if args.rounds else WARM_UP
    # The open loop keeps --concurrent sessions open (never exited) besides the exiting ones.
    open_sessions = args.concurrent + args.open_loop_exits * trials_at_most if rates else 0
    with tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
        folder = Path(tmp)
        env = service_env(folder, fault_rate=0.0, seed=args.seed, hold=args.hold,
                          latency_ms=args.processor_latency_ms)
        env["STOREFRONT_PAYMENT_DECLINE_RATE"] = "0"
        sessions, _refused, gate = set_up_sessions(env, burst_sessions + open_sessions,
                                                   rng, args.hold)
        service = Service(env, free_port(), folder / "service.log")
        report: dict[str, Any] = {}
        try:
            service.start()
            bench = Bench(service, sessions, gate, rng)
            load_before = os.getloadavg()
            if args.rounds:
                timings, failures, cpu = bench.burst(args.concurrent, args.rounds)
                report.update({
                    "exit_to_receipt_ms_p50": _percentile(timings, 50),
                    "exit_to_receipt_ms_p99": _percentile(timings, 99),
                    "exit_to_receipt_ms_max": round(max(timings), 1),
                    "burst_target_met": _percentile(timings, 99) <= TARGET_P99_MS,
                    "concurrent": args.concurrent, "rounds": args.rounds,
                    "exits_timed": len(timings), "non_200": failures,
                    "server_cpu_ms_per_exit": cpu})
                if args.floor:
                    floor, floor_cpu = bench.health_burst(args.concurrent, args.rounds)
                    report.update({
                        "floor_health_burst_ms_p50": _percentile(floor, 50),
                        "floor_health_burst_ms_p99": _percentile(floor, 99),
                        "floor_server_cpu_ms_per_request": floor_cpu})
            else:
                asyncio.run(_round(bench.base, bench.take(WARM_UP), gate))  # not counted
                report.update({"concurrent": args.concurrent, "non_200": 0})
            if rates:
                bench.take(args.concurrent)  # they stay open through every trial
                report.update(_open_loop_report(bench, rates, args))
            load_after = os.getloadavg()
        finally:
            service.kill()
    report.update({
        "target_p99_ms": TARGET_P99_MS, "processor_latency_ms": args.processor_latency_ms,
        "service_processes": 1, "cpus": os.cpu_count(),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "database": "sqlite file", "seed": args.seed})
    return report


def _open_loop_report(bench: Bench, rates: list[float],
                      args: argparse.Namespace) -> dict[str, Any]:
    """Run the open-loop trials; the first rate asked for gives the ``open_loop_*`` keys."""
    def trial(rate: float) -> Trial:
        return bench.open_loop(rate, args.open_loop_exits)

    if args.find_max_rate:
        trials, best = search_max_rate(trial, rates[0], args.search_steps)
    else:
        trials = [trial(rate) for rate in rates]
        within = [t.rate_per_s for t in trials if t.within_target]
        best = max(within) if within else None
    first = trials[0]
    return {
        "open_loop_rate_per_s": first.rate_per_s, "open_loop_ms_p50": first.ms_p50,
        "open_loop_ms_p99": first.ms_p99, "open_loop_open_sessions": args.concurrent,
        "open_loop_exits_per_trial": args.open_loop_exits,
        "open_loop_max_rate_per_s_within_target": best,
        "open_loop_non_200": sum(t.non_200 for t in trials),
        "open_loop_trials": [asdict(t) for t in trials]}


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=200,
                        help="sessions per burst round; sessions kept open in the open loop")
    parser.add_argument("--rounds", type=int, default=5, help="burst rounds (0: no burst)")
    parser.add_argument("--arrival-rate", type=float, nargs="+", default=None,
                        metavar="EXITS_PER_S", help="open-loop Poisson arrival rate(s)")
    parser.add_argument("--open-loop-exits", type=int, default=500,
                        help="exits timed per open-loop rate")
    parser.add_argument("--find-max-rate", action="store_true",
                        help="search the highest open-loop rate with p99 within the target")
    parser.add_argument("--search-steps", type=int, default=3,
                        help="bisections of --find-max-rate after the doubling")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the GET /health bursts that measure the stack's floor")
    parser.add_argument("--hold", type=int, default=5000, help="entry hold, minor units")
    parser.add_argument("--processor-latency-ms", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.rounds == 0 and not (args.arrival_rate or args.find_max_rate):
        parser.error("nothing to time: give --rounds > 0, --arrival-rate or --find-max-rate")
    report = run(args)
    print_and_save(report, args.json)
    failed = report["non_200"] or report.get("open_loop_non_200", 0)
    sys.exit(1 if failed else 0)  # a failed exit is not a latency


if __name__ == "__main__":
    main()
