"""Event ingest benchmark: events/s appended and projected vs the raw insert rate.

One process. For SQLite (a temporary file) and PostgreSQL (its own database on
127.0.0.1:5432, user postgres, created and dropped here; skipped with a note when
unreachable), the same seeded workload runs twice:

1. **ingest**: ``--sessions`` open sessions receive ``--events`` item events from
   their smart carts, delivered with 10% duplicates (re-sent earlier events) and 10%
   reordering (events swapped with a neighbour up to 20 places away), in chunks of
   ``--batch`` deliveries. A gateway flushes ``--flush`` consecutive chunks (of
   different sessions, or merged when one session sends twice) in one
   ``SessionService.record_many`` call: one transaction each (``--flush 1`` is one
   ``record_items`` call per chunk). Every session's cart is then projected from the
   events the appends returned (in memory, no re-decoding). ``*_events_per_s`` =
   unique events / (ingest + projection seconds). Untimed afterwards: every cart is
   projected again from the global feed (``since``, decoding each row) and both must
   equal the cart of the original, clean stream; ``*_feed_projection_per_s`` is that
   feed read's rate, and ``*_events_per_s_with_feed_projection`` counts it in too.
2. **raw**: the very rows the store wrote, inserted into an empty ``cart_events``
   table with a plain ``executemany`` per transaction of the ingest (the same rows in
   the same transactions). ``*_raw_per_s`` = rows / seconds. ``*_raw_one_tx_per_s`` is
   the same rows in a single transaction (the upper bound).

Both alternate ``--repeat`` times (the machine is shared) and medians are reported,
with the load average (``os.getloadavg``) before and after.

Run: ``python benchmarks/bench_ingest.py --json benchmarks/results/bench_ingest.json``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cart.event_store import StoredEvent
from cart.events import Event, ItemPicked, ItemPutBack
from cart.projections import CartContents, cart_contents
from cart.service import ItemResult, SessionService
from cart.sql_event_store import SqlEventStore, cart_events, create_schema, event_row

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.5
TARGET_PG_EVENTS_PER_S = 5000.0


def make_stream(session: int, count: int, rng: random.Random, t0: datetime) -> list[Event]:
    """A valid smart-cart stream: picks, and put-backs of something in the cart."""
    held: dict[str, int] = {}
    events: list[Event] = []
    for seq in range(count):
        at = t0 + timedelta(milliseconds=250 * seq)
        in_cart = [code for code, qty in held.items() if qty > 0]
        if in_cart and rng.random() < 0.2:
            code = rng.choice(sorted(in_cart))
            held[code] -= 1
            events.append(ItemPutBack(code, 1, f"cart-{session}", seq, at, 0.99))
        else:
            code = f"50000000{rng.randrange(40):05d}"
            held[code] = held.get(code, 0) + 1
            events.append(ItemPicked(code, 1, f"cart-{session}", seq, at, 0.99))
    return events


def noisy(events: list[Event], rng: random.Random) -> list[Event]:
    """10% duplicates (an earlier event sent again) and 10% reordering."""
    out = list(events)
    for _ in range(len(events) // 10):
        i = rng.randrange(len(out) - 1)
        j = min(len(out) - 1, i + rng.randint(1, 20))
        out[i], out[j] = out[j], out[i]
    for _ in range(len(events) // 10):
        i = rng.randrange(len(out))
        out.insert(rng.randrange(i, len(out) + 1), out[i])
    return out


Arrival = list[dict[str, list[Event]]]


def workload(args: argparse.Namespace) -> tuple[dict[str, list[Event]], Arrival]:
    """(clean stream per session, gateway flushes in arrival order: session -> events)."""
    rng = random.Random(args.seed)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    per_session = args.events // args.sessions
    clean = {f"ses-{s:05d}": make_stream(s, per_session, rng, t0) for s in range(args.sessions)}
    pending: dict[str, list[list[Event]]] = {}
    for session_id, events in clean.items():
        delivered = noisy(events, rng)
        pending[session_id] = [delivered[i : i + args.batch]
                               for i in range(0, len(delivered), args.batch)]
    # Sessions interleave; each session's chunks keep their relative order.
    chunks: list[tuple[str, list[Event]]] = []
    while pending:
        session_id = rng.choice(sorted(pending))
        chunks.append((session_id, pending[session_id].pop(0)))
        if not pending[session_id]:
            del pending[session_id]
    arrival: Arrival = []
    for start in range(0, len(chunks), args.flush):
        flush: dict[str, list[Event]] = {}
        for session_id, chunk in chunks[start : start + args.flush]:
            flush.setdefault(session_id, []).extend(chunk)
        arrival.append(flush)
    return clean, arrival


def project(store: SqlEventStore, page: int = 5000) -> dict[str, CartContents]:
    """Every session's cart, following the global feed (each row decoded)."""
    events: dict[str, list[Event]] = {}
    position = 0
    while batch := store.since(position, page):
        for stored in batch:
            events.setdefault(stored.session_id, []).append(stored.event)
        position = batch[-1].position
    return {sid: cart_contents(evs) for sid, evs in events.items()}


Rows = list[dict[str, Any]]


def run_ingest(
    url: str, clean: dict[str, list[Event]], arrival: Arrival
) -> tuple[float, float, int, list[Rows]]:
    """(ingest + projection seconds, feed projection seconds, duplicates reported,
    rows written per transaction)."""
    engine = sa.create_engine(url)
    create_schema(engine)
    store = SqlEventStore(engine)
    service = SessionService(store, lambda: datetime.now(UTC))
    for session_id in clean:
        service.open(session_id, f"shopper-{session_id}", "store-1", "palm")
    duplicates = 0
    calls: list[list[StoredEvent]] = []
    appended: dict[str, list[Event]] = {}
    start = time.perf_counter()
    for flush in arrival:
        if len(flush) == 1:
            [(session_id, chunk)] = flush.items()
            outcomes = {session_id: service.record_items(session_id, chunk)}
        else:
            outcomes = service.record_many(flush)
        calls.append([])
        for session_id, results in outcomes.items():
            duplicates += _collect(results, calls[-1], appended.setdefault(session_id, []))
    carts = {sid: cart_contents(events) for sid, events in appended.items()}
    seconds = time.perf_counter() - start
    feed_start = time.perf_counter()
    feed_carts = project(store)
    feed_seconds = time.perf_counter() - feed_start
    for session_id, events in clean.items():
        if not carts[session_id] == feed_carts[session_id] == cart_contents(events):
            raise SystemExit(f"cart of {session_id} differs from the clean stream's")
    engine.dispose()
    return seconds, feed_seconds, duplicates, [[_raw_row(s) for s in c] for c in calls if c]


def _collect(results: list[ItemResult], stored: list[StoredEvent], events: list[Event]) -> int:
    """Add the recorded items to ``stored`` and ``events``; returns the duplicates."""
    duplicates = 0
    for result in results:
        if result.stored is not None:
            stored.append(result.stored)
            events.append(result.stored.event)
        elif result.outcome == "duplicate":
            duplicates += 1
        else:
            raise SystemExit(f"unexpected outcome {result}")
    return duplicates


def _raw_row(stored: StoredEvent) -> dict[str, Any]:
    return event_row(stored.session_id, stored.version, stored.event, stored.recorded_at)


def run_raw(url: str, groups: list[Rows], one_tx: bool) -> float:
    """Rows per second for plain executemany inserts of ``groups`` (one per transaction,
    or all in one transaction when ``one_tx``)."""
    engine = sa.create_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(cart_events))
    insert = sa.insert(cart_events)
    start = time.perf_counter()
    if one_tx:
        with engine.begin() as conn:
            conn.execute(insert, [row for rows in groups for row in rows])
    else:
        for rows in groups:
            with engine.begin() as conn:
                conn.execute(insert, rows)
    seconds = time.perf_counter() - start
    engine.dispose()
    return sum(len(rows) for rows in groups) / seconds


def measure(
    name: str,
    make_url: Callable[[str], Any],
    clean: dict[str, list[Event]],
    arrival: Arrival,
    repeat: int,
) -> dict[str, Any]:
    """Ingest, then raw inserts of the same rows in the same transactions, alternated
    ``repeat`` times (the machine is shared); medians are reported."""
    ingest, feed, with_feed, raw, raw_one = [], [], [], [], []
    duplicates = recorded = 0
    for _ in range(repeat):
        with make_url("ingest") as url:
            seconds, feed_seconds, duplicates, groups = run_ingest(url, clean, arrival)
        recorded = sum(len(rows) for rows in groups)
        assert recorded == sum(len(events) for events in clean.values())
        ingest.append(recorded / seconds)
        feed.append(recorded / feed_seconds)
        with_feed.append(recorded / (seconds + feed_seconds))
        with make_url("raw") as url:
            raw.append(run_raw(url, groups, one_tx=False))
        with make_url("raw1") as url:
            raw_one.append(run_raw(url, groups, one_tx=True))
    events_per_s, raw_per_s = statistics.median(ingest), statistics.median(raw)
    print(f"{name}: {recorded} events ({duplicates} duplicates reported) in {len(groups)} "
          f"transactions: {events_per_s:,.0f} events/s (runs {[round(x) for x in ingest]}); "
          f"raw executemany {raw_per_s:,.0f} rows/s (runs {[round(x) for x in raw]}; one "
          f"transaction {statistics.median(raw_one):,.0f}); ratio {events_per_s / raw_per_s:.2f}; "
          f"feed projection {statistics.median(feed):,.0f} events/s")
    return {f"{name}_events_per_s": round(events_per_s, 1),
            f"{name}_raw_per_s": round(raw_per_s, 1),
            f"{name}_raw_one_tx_per_s": round(statistics.median(raw_one), 1),
            f"{name}_ratio": round(events_per_s / raw_per_s, 3),
            f"{name}_feed_projection_per_s": round(statistics.median(feed), 1),
            f"{name}_events_per_s_with_feed_projection": round(statistics.median(with_feed), 1),
            f"{name}_transactions": len(groups),
            f"{name}_duplicates_reported": duplicates,
            f"{name}_runs_events_per_s": [round(x, 1) for x in ingest],
            f"{name}_runs_raw_per_s": [round(x, 1) for x in raw],
            f"{name}_runs_ratio": [round(x / y, 3) for x, y in zip(ingest, raw, strict=True)]}


@contextmanager
def sqlite_url(tag: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / f'{tag}.db'}"


@contextmanager
def postgres_url(tag: str) -> Iterator[str]:
    name = f"bench_ingest_{tag}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50, help="deliveries per device chunk")
    parser.add_argument("--flush", type=int, default=20,
                        help="chunks per gateway flush (one transaction)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs; medians")
    args = parser.parse_args(argv)
    clean, arrival = workload(args)
    result: dict[str, Any] = {
        "events": args.events, "sessions": args.sessions, "batch": args.batch,
        "flush": args.flush, "seed": args.seed, "repeat": args.repeat,
        "transaction": f"ingest and raw alike: one per gateway flush of up to {args.flush} "
                       f"chunks of {args.batch} deliveries ({len(arrival)} flushes)",
        "projection": "timed: carts from the appended events in memory; "
                      "feed_projection: since() + decode, untimed in events_per_s",
        "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    result.update(measure("sqlite", sqlite_url, clean, arrival, args.repeat))
    if postgres_reachable():
        result.update(measure("postgres", postgres_url, clean, arrival, args.repeat))
    else:
        print("postgres: skipped, nothing listens on 127.0.0.1:5432")
        result.update(postgres_events_per_s=None, postgres_raw_per_s=None,
                      postgres_note="skipped: PostgreSQL unreachable on 127.0.0.1:5432")
    met = [result["sqlite_ratio"] >= TARGET_RATIO]
    if result.get("postgres_events_per_s") is not None:
        met += [result["postgres_ratio"] >= TARGET_RATIO,
                result["postgres_events_per_s"] >= TARGET_PG_EVENTS_PER_S]
    result["targets_met"] = all(met)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
