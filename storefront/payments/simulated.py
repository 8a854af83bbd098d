"""The seeded simulated processor, with fault injection and state that can outlive us.

State lives in SQLite (stdlib ``sqlite3``): in memory by default, or in a file so
that a killed and restarted service meets the same processor (as it would a real
one). Each call runs in one ``BEGIN IMMEDIATE`` transaction, so an operation
either happened or did not, whichever process dies.

Faults (``FaultPlan``) are drawn from SHA-256 of (seed, key, call number), so a
run is reproducible: declines, timeouts before the call, timeouts *after* it took
effect (the caller never hears of the success), and HTTP 5xx answers.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from storefront.errors import PaymentError
from storefront.payments.base import (
    Authorization,
    Capture,
    Operation,
    OperationKind,
    ProcessorTimeout,
    ProcessorUnavailable,
    Refund,
)

T = TypeVar("T")
Fault = Literal["decline", "timeout_before", "timeout_after", "server_error"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auths (id TEXT PRIMARY KEY, key TEXT UNIQUE, token TEXT,
  amount INTEGER, currency TEXT, status TEXT, reason TEXT, captured INTEGER,
  capture_id TEXT UNIQUE, voided INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS adjustments (key TEXT PRIMARY KEY, auth_id TEXT, amount INTEGER);
CREATE TABLE IF NOT EXISTS refunds (id TEXT PRIMARY KEY, key TEXT UNIQUE, capture_id TEXT,
  amount INTEGER);
CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, ref TEXT);
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, n INTEGER);
"""


@dataclass(frozen=True)
class FaultPlan:
    """Share ``rate`` of calls fail; the failure kind is drawn with the given weights.

    ``decline`` applies to holds; on other calls it becomes a 5xx answer.
    """

    rate: float = 0.0
    decline: float = 1.0
    timeout_before: float = 1.0
    timeout_after: float = 1.0
    server_error: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")
        weights = (self.decline, self.timeout_before, self.timeout_after, self.server_error)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("fault weights must be >= 0 and not all zero")


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedProcessor:
    """A deterministic processor: issuer declines, injected faults, durable state.

    ``decline_rate``: share of holds the issuer declines, decided by SHA-256 of
    (seed, token, amount) as an issuer's answer depends on the card and the sum.
    ``state_path``: SQLite file shared across processes and restarts (None: memory).
    ``remember_keys``: replay the first answer for a repeated key (True, like a
    real processor); tests switch it off to prove the service's own journal guards.
    ``latency_ms``: sleep per call, to model the network. Thread-safe.
    ``on_call``: called as ``on_call(label, key)`` (label: authorize, adjust, capture,
    void, refund or lookup; key: the call's idempotency key, ``kind:key`` for a
    look-up) after the latency and before the call reaches the processor's state,
    outside its lock: tests pause a call there, as a slow network would, to make a
    race happen deterministically; an exception it raises fails the call unsent.
    """

    supports_adjust = True
    lookup_is_complete = True  # every call is kept by its key (state file or memory)

    def __init__(self, *, seed: int, decline_rate: float, faults: FaultPlan | None = None,
                 state_path: Path | None = None, remember_keys: bool = True,
                 latency_ms: float = 0.0,
                 on_call: Callable[[str, str], None] | None = None) -> None:
        if not 0.0 <= decline_rate <= 1.0:
            raise ValueError("decline_rate must be within [0, 1]")
        self._seed = seed
        self._decline_rate = decline_rate
        self._faults = faults or FaultPlan()
        self._remember = remember_keys
        self._latency_s = latency_ms / 1000.0
        self._on_call = on_call
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(state_path) if state_path else ":memory:",
                                     timeout=30.0, isolation_level=None,
                                     check_same_thread=False)
        if state_path:  # WAL + NORMAL: survives a killed process (not a power cut)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _fault(self, db: sqlite3.Connection, key: str) -> Fault | None:
        row = db.execute("SELECT n FROM calls WHERE key = ?", (key,)).fetchone()
        n = (row[0] if row else 0) + 1
        db.execute("INSERT INTO calls (key, n) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                   "SET n = excluded.n", (key, n))
        plan = self._faults
        if _unit(self._seed, "fault", key, n) >= plan.rate:
            return None
        weights: list[tuple[Fault, float]] = [
            ("decline", plan.decline), ("timeout_before", plan.timeout_before),
            ("timeout_after", plan.timeout_after), ("server_error", plan.server_error)]
        pick = _unit(self._seed, "kind", key, n) * sum(w for _, w in weights)
        for fault, weight in weights:
            if pick < weight:
                return fault
            pick -= weight
        return "server_error"

    def _call(self, key: str, label: str, run: Callable[[sqlite3.Connection, bool], T]) -> T:
        """Run ``run(db, declined)`` in one transaction, with the injected fault around it."""
        if self._latency_s:
            time.sleep(self._latency_s)
        if self._on_call is not None:
            self._on_call(label, key)
        with self._tx() as db:
            fault = self._fault(db, f"{label}:{key}")
            if fault == "decline" and label != "authorize":
                fault = "server_error"  # only holds can be declined
            if fault not in ("timeout_before", "server_error"):
                result = run(db, fault == "decline")
        if fault in ("timeout_before", "timeout_after"):
            raise ProcessorTimeout(f"{label} timed out (simulated)")
        if fault == "server_error":
            raise ProcessorUnavailable(f"{label}: processor answered 503 (simulated)")
        return result

    def _replay(self, db: sqlite3.Connection, key: str) -> str | None:
        if not self._remember:
            return None
        row = db.execute("SELECT ref FROM replies WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _remember_reply(self, db: sqlite3.Connection, key: str, ref: str) -> None:
        db.execute("INSERT OR IGNORE INTO replies (key, ref) VALUES (?, ?)", (key, ref))

    def authorize(self, *, token: str, amount_minor: int, currency: str,
                  idempotency_key: str) -> Authorization:
        """Hold ``amount_minor``; declined for a share ``decline_rate`` of (card, amount)."""
        if amount_minor <= 0:
            raise PaymentError("a hold must be for a positive amount")
        if not token:
            raise PaymentError("no payment token on file")

        def run(db: sqlite3.Connection, forced_decline: bool) -> Authorization:
            replay = self._replay(db, idempotency_key)
            if replay is not None:
                return self._auth(db, replay)
            declined = forced_decline or (
                _unit(self._seed, token, amount_minor) < self._decline_rate)
            auth_id = f"sim_auth_{_next_id(db, 'auths')}"
            db.execute("INSERT INTO auths (id, key, token, amount, currency, status, reason) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                       (auth_id, idempotency_key, token, amount_minor, currency,
                        "declined" if declined else "authorized",
                        "card declined by issuer (simulated)" if declined else None))
            self._remember_reply(db, idempotency_key, auth_id)
            return self._auth(db, auth_id)

        return self._call(idempotency_key, "authorize", run)

    def adjust(self, *, authorization_id: str, amount_minor: int,
               idempotency_key: str) -> Authorization:
        """Raise or lower an open hold in place (incremental authorization)."""

        def run(db: sqlite3.Connection, _declined: bool) -> Authorization:
            auth = self._open_auth(db, authorization_id)
            if amount_minor <= 0:
                raise PaymentError("a hold must be for a positive amount")
            if amount_minor > auth.amount_minor and (
                    _unit(self._seed, "adjust", authorization_id, amount_minor)
                    < self._decline_rate):
                return Authorization(auth.authorization_id, "declined", auth.amount_minor,
                                     auth.currency, "increase declined by issuer (simulated)")
            db.execute("UPDATE auths SET amount = ? WHERE id = ?",
                       (amount_minor, authorization_id))
            db.execute("INSERT OR IGNORE INTO adjustments (key, auth_id, amount) "
                       "VALUES (?, ?, ?)", (idempotency_key, authorization_id, amount_minor))
            return self._auth(db, authorization_id)

        return self._call(idempotency_key, "adjust", run)

    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        """Capture against an authorized, unvoided, uncaptured hold."""

        def run(db: sqlite3.Connection, _declined: bool) -> Capture:
            replay = self._replay(db, idempotency_key)
            if replay is not None:
                return self._capture_of(db, replay)
            auth = self._open_auth(db, authorization_id)
            if not 0 <= amount_minor <= auth.amount_minor:
                raise PaymentError("capture exceeds the authorized amount")
            capture_id = f"sim_cap_{authorization_id.removeprefix('sim_auth_')}"
            db.execute("UPDATE auths SET captured = ?, capture_id = ? WHERE id = ?",
                       (amount_minor, capture_id, authorization_id))
            self._remember_reply(db, idempotency_key, authorization_id)
            return Capture(capture_id, authorization_id, amount_minor)

        return self._call(idempotency_key, "capture", run)

    def void(self, *, authorization_id: str, idempotency_key: str) -> None:
        """Release a hold; voiding twice is harmless, voiding a captured hold is an error."""

        def run(db: sqlite3.Connection, _declined: bool) -> None:
            row = db.execute("SELECT captured FROM auths WHERE id = ?",
                             (authorization_id,)).fetchone()
            if row is None:
                raise PaymentError(f"no authorization {authorization_id}")
            if row[0] is not None:
                raise PaymentError(f"authorization {authorization_id} was captured")
            db.execute("UPDATE auths SET voided = 1 WHERE id = ?", (authorization_id,))

        self._call(idempotency_key, "void", run)

    def refund(self, *, capture_id: str, amount_minor: int, idempotency_key: str) -> Refund:
        """Refund up to what is left of a capture; the same key returns the first refund."""

        def run(db: sqlite3.Connection, _declined: bool) -> Refund:
            found = db.execute("SELECT id, capture_id, amount FROM refunds WHERE key = ?",
                               (idempotency_key,)).fetchone()
            if found is not None and self._remember:
                return Refund(found[0], found[1], found[2])
            row = db.execute("SELECT captured FROM auths WHERE capture_id = ?",
                             (capture_id,)).fetchone()
            if row is None:
                raise PaymentError(f"no capture {capture_id}")
            done = db.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE capture_id = ?",
                              (capture_id,)).fetchone()[0]
            left = int(row[0]) - int(done)
            if not 0 < amount_minor <= left:
                raise PaymentError(f"refund of {amount_minor} exceeds the {left} left to refund")
            refund_id = f"sim_ref_{_next_id(db, 'refunds')}"
            db.execute("INSERT INTO refunds (id, key, capture_id, amount) VALUES (?, ?, ?, ?)",
                       (refund_id, None if found is not None else idempotency_key, capture_id,
                        amount_minor))
            return Refund(refund_id, capture_id, amount_minor)

        return self._call(idempotency_key, "refund", run)

    def lookup(self, *, kind: OperationKind, idempotency_key: str,
               reference: str | None) -> Operation | None:
        """What became of an earlier call (found by key, or by the authorization it acted on).

        Subject to the same transient faults as any call (never a decline).
        """
        def run(db: sqlite3.Connection, _declined: bool) -> Operation | None:
            return _lookup(db, kind, idempotency_key, reference)

        return self._call(f"{kind}:{idempotency_key}", "lookup", run)

    def _auth(self, db: sqlite3.Connection, auth_id: str) -> Authorization:
        row = db.execute("SELECT id, status, amount, currency, reason FROM auths WHERE id = ?",
                         (auth_id,)).fetchone()
        return Authorization(row[0], row[1], row[2], row[3], row[4])

    def _capture_of(self, db: sqlite3.Connection, auth_id: str) -> Capture:
        row = db.execute("SELECT capture_id, captured FROM auths WHERE id = ?",
                         (auth_id,)).fetchone()
        return Capture(row[0], auth_id, row[1])

    def _open_auth(self, db: sqlite3.Connection, auth_id: str) -> Authorization:
        row = db.execute("SELECT status, captured, voided FROM auths WHERE id = ?",
                         (auth_id,)).fetchone()
        if row is None or row[0] != "authorized":
            raise PaymentError(f"no usable authorization {auth_id}")
        if row[1] is not None or row[2]:
            raise PaymentError(f"authorization {auth_id} is already closed")
        return self._auth(db, auth_id)

    def captured_total(self) -> int:
        """Sum of all captures in minor units (for reconciliation in tests and the demo)."""
        with self._lock:
            return int(self._conn.execute(
                "SELECT COALESCE(SUM(captured), 0) FROM auths").fetchone()[0])

    def holds(self) -> list[dict[str, object]]:
        """Every hold: id, key, amount, status, captured (minor units or None), voided."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, key, amount, status, captured, voided FROM auths").fetchall()
        return [{"id": r[0], "key": r[1], "amount_minor": r[2], "status": r[3],
                 "captured_minor": r[4], "voided": bool(r[5])} for r in rows]

    def close(self) -> None:
        """Close the state database."""
        with self._lock:
            self._conn.close()


def _next_id(db: sqlite3.Connection, table: str) -> str:
    count = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
    return f"{int(count) + 1:06d}"


def _lookup(db: sqlite3.Connection, kind: OperationKind, key: str,
            reference: str | None) -> Operation | None:
    if kind == "authorize":
        row = db.execute("SELECT id, status, amount, reason FROM auths WHERE key = ?",
                         (key,)).fetchone()
        if row is None:
            return None
        status: Literal["succeeded", "declined"] = (
            "succeeded" if row[1] == "authorized" else "declined")
        return Operation("authorize", row[0], status, row[2], row[3])
    if kind == "adjust":
        row = db.execute("SELECT auth_id, amount FROM adjustments WHERE key = ?",
                         (key,)).fetchone()
        return None if row is None else Operation("adjust", row[0], "succeeded", row[1])
    if kind == "refund":
        row = db.execute("SELECT id, amount FROM refunds WHERE key = ?", (key,)).fetchone()
        return None if row is None else Operation("refund", row[0], "succeeded", row[1])
    row = db.execute("SELECT captured, capture_id, voided FROM auths WHERE id = ?",
                     (reference,)).fetchone()
    if row is None:
        return None
    if kind == "capture" and row[0] is not None:
        return Operation("capture", row[1], "succeeded", row[0])
    if kind == "void" and row[2]:
        return Operation("void", str(reference), "succeeded", 0)
    return None
