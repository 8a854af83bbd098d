"""Exits under chaos (issue 6): a flaky processor and a service killed at random moments.

Sets up N shopping sessions (one shopper each, an entry hold placed at the gate,
baskets below and above the hold, some empty, some with an age-restricted item),
then runs ``storefront serve`` as a subprocess on a loopback port with a file
SQLite database and a simulated processor whose state is a separate SQLite file
(so it outlives the service, as a real processor would). The processor fails a
share of calls (declines, timeouts before and *after* the call took effect, HTTP
5xx). Client threads POST every exit and retry (connection refused, 5xx, 409)
until each session is resolved, while a killer thread SIGKILLs the service at
random moments and starts it again (it reconciles at start).

Then every session is checked against the processor's own ledger:
double_captures (a session captured more than once), lost_captures (money taken
without a settled receipt for that amount, or a receipt without its capture),
unresolved (no final answer). Must hold: all three are 0.

    python benchmarks/chaos_checkout.py --exits 1000 --json benchmarks/results/chaos_checkout.json
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from bench_report import print_and_save

from storefront.bootstrap import bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.catalog import make_item
from storefront.db.models import Payment, Receipt, ShoppingSession
from storefront.errors import EntryRefused
from storefront.payments import SimulatedProcessor
from storefront.security.devices_http import sign_headers
from storefront.settings import Settings

CLI = Path(sys.executable).parent / "storefront"
AGE_ITEM = make_item("5010000000001", "Single malt 70 cl", 3200, "GBP", age_restricted=True)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(folder: Path, *, fault_rate: float, seed: int, hold: int,
                latency_ms: float = 0.0) -> dict[str, str]:
    """Environment of the service (and of the set-up, which shares its stores)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    env.update({
        "STOREFRONT_STATE_DIR": str(folder / "data"),
        "STOREFRONT_PAYMENT_SIM_STATE": str(folder / "processor.db"),
        "STOREFRONT_PAYMENT_FAULT_RATE": str(fault_rate),
        "STOREFRONT_PAYMENT_DECLINE_RATE": "0.05",
        "STOREFRONT_PAYMENT_SEED": str(seed),
        "STOREFRONT_PAYMENT_SIM_LATENCY_MS": str(latency_ms),
        "STOREFRONT_ENTRY_HOLD_MINOR": str(hold),
        # One service process at a time here, so whatever it finds in flight at start
        # was left by the killed one.
        "STOREFRONT_PAYMENT_RECONCILE_AFTER_S": "0",
        "STOREFRONT_EXIT_LEASE_S": "3",
    })
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """Settings equal to what the service reads from ``env``."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class GateSigner:
    """Signs exit requests as the bench's exit gate (a registered device, as in a store:
    ``POST /sessions/{id}/exit`` takes signed gate requests only)."""

    device_id: str
    key: bytes

    def exit_headers(self, session_id: str) -> dict[str, str]:
        """Fresh signature headers (new nonce, current time) for one exit request."""
        return sign_headers(self.key, device_id=self.device_id, method="POST",
                            path=f"/sessions/{session_id}/exit", query="", body=b"",
                            ts_ms=int(time.time() * 1000))


def set_up_sessions(env: dict[str, str], count: int, rng: random.Random,
                    hold: int) -> tuple[list[str], int, GateSigner]:
    """Open ``count`` sessions with baskets and register the exit gate; returns the
    session ids, the entries refused and the gate's signer."""
    c = bootstrap(settings_from(env))
    key = c.security.registry.add(store_id=c.settings.store_id, device_id="bench-exit-gate",
                                  kind="gate")
    items = builtin_items()
    c.catalogue.upsert([*items, AGE_ITEM])
    sessions: list[str] = []
    refused, now = 0, datetime.now(UTC)
    while len(sessions) < count:
        shopper = c.shoppers.register(display_name=f"Shopper {len(sessions)}",
                                      payment_token="tok_" + "".join(
                                          rng.choices(string.ascii_lowercase, k=12)))
        try:
            session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
        except EntryRefused:
            refused += 1
            continue
        for seq, (code, qty) in enumerate(_basket(rng, items, hold)):
            c.ingest.record(session_id=session_id, kind="picked", product_code=code,
                            quantity=qty, device_id=f"cart-{session_id[-12:]}",
                            device_seq=seq, sensor_time=now)
        sessions.append(session_id)
    c.close()
    return sessions, refused, GateSigner("bench-exit-gate", key)


def _basket(rng: random.Random, items: list[Any], hold: int) -> list[tuple[str, int]]:
    roll = rng.random()
    if roll < 0.08:
        return []
    lines = [(item.code, rng.randint(1, 3)) for item in rng.sample(items, rng.randint(1, 5))]
    if roll < 0.13:
        lines.append((AGE_ITEM.code, 1))
    elif roll < 0.40:  # above the hold: raised in place or re-authorized
        lines.append((items[4].code, hold // items[4].unit_price_minor + 2))
    return lines


class Service:
    """``storefront serve`` as a subprocess that can be killed and restarted."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.kills = 0

    def start(self) -> None:
        """Start the server and wait until /health answers; RuntimeError (with the end of
        its log) when it exits first or does not answer within 60 s (it is then killed)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(CLI), "serve", "--port", str(self.port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        exited = self.proc.poll()
        self.kill()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"service did not start (exit status {exited}); log ends:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown) and wait for it to die."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def restart(self) -> None:
        """Kill, then start again."""
        with self.lock:
            self.kill()
            self.start()


def exit_until_resolved(base: str, session_id: str, deadline: float,
                        gate: GateSigner) -> dict[str, Any] | None:
    """POST the exit (signed by the gate) until a final answer (200); None when the
    deadline passes first. Raises RuntimeError on any other 4xx (a broken bench)."""
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                answer = client.post(f"{base}/sessions/{session_id}/exit",
                                     headers=gate.exit_headers(session_id))
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if answer.status_code == 200:
                return dict(answer.json())
            if answer.status_code < 500 and answer.status_code != 409:
                raise RuntimeError(f"{session_id}: {answer.status_code} {answer.text}")
            time.sleep(0.2)
    return None


def audit(env: dict[str, str], sessions: list[str]) -> dict[str, Any]:
    """Compare the service's records with the processor's ledger."""
    processor = SimulatedProcessor(seed=0, decline_rate=0.0,
                                   state_path=Path(env["STOREFRONT_PAYMENT_SIM_STATE"]))
    captures: dict[str, list[int]] = {}
    open_holds = 0
    for hold in processor.holds():
        session_id = str(hold["key"]).split(":")[0]
        if hold["captured_minor"] is not None:
            captures.setdefault(session_id, []).append(int(str(hold["captured_minor"])))
        elif hold["status"] == "authorized" and not hold["voided"]:
            open_holds += 1
    processor.close()
    engine = sa.create_engine(settings_from(env).resolved_database_url())
    with engine.connect() as db:
        status = dict(db.execute(sa.select(ShoppingSession.id, ShoppingSession.status)).all())
        receipts = dict(db.execute(sa.select(Receipt.session_id, Receipt.total_minor)).all())
        payments = Counter(db.scalars(sa.select(Payment.state)).all())
    engine.dispose()
    double = sum(1 for sid in sessions if len(captures.get(sid, [])) > 1)
    lost = 0
    for sid in sessions:
        taken = captures.get(sid, [])
        owed = receipts.get(sid) if status.get(sid) == "settled" else None
        if (taken and owed is None) or (owed and taken != [owed]):
            lost += 1
    return {"double_captures": double, "lost_captures": lost,
            "settled": sum(status.get(s) == "settled" for s in sessions),
            "staffed": sum(status.get(s) == "staffed" for s in sessions),
            "open_holds_left": open_holds, "payment_states": dict(payments)}


def kill_at_random(service: Service, rng: random.Random, stop: threading.Event,
                   every_s: tuple[float, float]) -> None:
    """Kill and restart the service at random moments until ``stop`` is set."""
    while not stop.wait(rng.uniform(*every_s)):
        service.restart()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, run the chaos, audit; returns the report."""
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-checkout-") as tmp:
        folder = Path(tmp)
        env = service_env(folder, fault_rate=args.fault_rate, seed=args.seed, hold=args.hold)
        sessions, refused, gate = set_up_sessions(env, args.exits, rng, args.hold)
        service = Service(env, free_port(), folder / "service.log")
        service.start()
        stop = threading.Event()
        killer = threading.Thread(target=kill_at_random, daemon=True,
                                  args=(service, rng, stop, (args.kill_min_s, args.kill_max_s)))
        started = time.monotonic()
        killer.start()
        base, deadline = f"http://127.0.0.1:{service.port}", started + args.timeout_s
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(lambda s: exit_until_resolved(base, s, deadline, gate),
                                    sessions))
        stop.set()
        killer.join()
        elapsed = time.monotonic() - started
        service.kill()
        report = audit(env, sessions)
    statuses = Counter(a["status"] for a in answers if a is not None)
    return {"exits": len(sessions), **report,
            "unresolved": sum(a is None for a in answers),
            "answered_paid": statuses["paid"], "answered_staffed": statuses["staffed"],
            "entries_refused": refused, "service_kills": service.kills,
            "processor_fault_rate": args.fault_rate, "entry_hold_minor": args.hold,
            "clients": args.clients, "seconds": round(elapsed, 1), "seed": args.seed}


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exits", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--hold", type=int, default=2000, help="entry hold, minor units")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-min-s", type=float, default=1.0)
    parser.add_argument("--kill-max-s", type=float, default=4.0)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    report = run(args)
    print_and_save(report, args.json)
    ok = report["double_captures"] == report["lost_captures"] == report["unresolved"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
