"""Entry gate: palm capture -> 1:N identification -> unpaid-balance check -> payment hold
-> shopping session opened, or refused with the reason and another way offered."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from cart.service import SessionService
from identity.service import IdentityService
from storefront.biometric_audit import audit_identification
from storefront.clock import Clock
from storefront.entry_lock import EntryLocks
from storefront.errors import EntryRefused, PaymentError
from storefront.exit_payment import ExitPayment
from storefront.payments.balance import NO_EXIT_RECORDED
from storefront.security.audit import Audit
from storefront.sessions import SessionReadModel
from storefront.shoppers import ShopperService


@dataclass(frozen=True)
class EntryDecision:
    """What the gate does. ``admitted`` opens it; otherwise ``reason`` is shown.

    ``score`` is the identification score in [0, 1]; ``identify_ms`` the time
    the 1:N search took, in milliseconds.
    """

    admitted: bool
    outcome: Literal["identified", "not_identified", "ambiguous", "refused"]
    reason: str
    session_id: str | None
    shopper_id: str | None
    score: float
    identify_ms: float


@dataclass(frozen=True)
class EntryPolicy:
    """``hold_minor``: entry hold in minor units (0: none); ``currency``: ISO 4217;
    ``unpaid_grace``: how long an unsettled staffed session may stay open;
    ``same_entry``: how soon an entry again is the same entry while its session has
    recorded nothing (zero: never)."""

    hold_minor: int = 0
    currency: str = "GBP"
    unpaid_grace: timedelta = timedelta(minutes=15)
    same_entry: timedelta = timedelta(seconds=60)


OTHER_WAY = "please use the staffed checkout"


class GateService:
    """Opens shopping sessions for identified shoppers who owe nothing and whose hold
    is approved."""

    def __init__(self, *, identity: IdentityService, carts: SessionService,
                 read_model: SessionReadModel, shoppers: ShopperService,
                 store_id: str, clock: Clock, payment: ExitPayment | None = None,
                 policy: EntryPolicy | None = None, audit: Audit | None = None,
                 entry_locks: EntryLocks | None = None) -> None:
        """``entry_locks``: serialise each shopper's entries across processes (see
        :mod:`storefront.entry_lock`); None: one process, a lock of its own."""
        self._locks = entry_locks
        self._own_lock = threading.Lock()
        self._audit = audit
        self._payment = payment
        self._policy = policy or EntryPolicy()
        self._identity = identity
        self._carts = carts
        self._read_model = read_model
        self._shoppers = shoppers
        self._store_id = store_id
        self._clock = clock
        self._close_missed: Callable[[str, str], object] | None = None

    def close(self) -> None:
        """Release the entry locks' connections (PostgreSQL)."""
        if self._locks is not None:
            self._locks.close()

    def on_missed_exit(self, close: Callable[[str, str], object]) -> None:
        """Set how a session left open is closed when its shopper enters again:
        ``close(session_id, reason)`` (the checkout sends it to the staffed checkout)."""
        self._close_missed = close

    def enter_by_palm(self, *, image: bytes, actor: str = "gate") -> EntryDecision:
        """Identify the palm in ``image`` (encoded bytes) and open a session.

        Not identified or ambiguous -> refused with the reason (an ambiguous
        match is never guessed). Raises identity's InvalidImageError or
        AcquisitionError for unusable captures. Every identification is written to
        the audit log as done by ``actor`` (the gate device), with an entry for each
        enrolled person whose templates it compared (:mod:`storefront.biometric_audit`).
        """
        result = self._identity.identify(image=image)
        if self._audit is not None:
            audit_identification(self._audit, actor=actor, result=result,
                                 store_id=self._store_id)
        if result.outcome != "identified" or result.subject_id is None:
            return EntryDecision(False, result.outcome, result.reason, None, None,
                                 result.score, result.elapsed_ms)
        shopper_id = result.subject_id
        self._shoppers.get(shopper_id)
        self._shoppers.palm_used(shopper_id=shopper_id, store_id=self._store_id)
        try:
            session_id = self.open_session(shopper_id=shopper_id, entry_method="palm")
        except EntryRefused as exc:
            return EntryDecision(False, "refused", exc.reason, None, shopper_id,
                                 result.score, result.elapsed_ms)
        return EntryDecision(True, "identified", "welcome", session_id, shopper_id,
                             result.score, result.elapsed_ms)

    def open_session(self, *, shopper_id: str, entry_method: str) -> str:
        """Open a shopping session for a known shopper; returns its id.

        A shopper is in the store once, whichever gates and processes they enter by:
        the steps below run under the shopper's entry lock (:mod:`storefront.entry_lock`).
        A session of the shopper opened less than ``policy.same_entry`` ago that has
        recorded nothing yet is this entry again (a double scan, two gates at once):
        its id is returned and no second hold is placed. Any other session of the
        shopper still open (no exit recorded) is first sent to the staffed checkout
        with the reason (see :meth:`on_missed_exit`).
        Raises EntryRefused (with the reason and the staffed checkout offered)
        when the shopper has an unpaid balance or the entry hold is declined or
        cannot be placed; NotFound for an unknown shopper; EntryBusy (a Conflict)
        when another entry of the shopper holds the lock for too long.
        """
        self._shoppers.get(shopper_id)
        with self._entry_lock(shopper_id):
            return self._open_locked(shopper_id, entry_method)

    def entry_refusal(self, shopper_id: str) -> str | None:
        """Why the shopper may not enter now (an unpaid balance), or None: the check
        entry makes first, for callers that want to say so before the gate (an app
        entry code)."""
        if self._payment is None:
            return None
        return self._payment.owed(shopper_id=shopper_id, now=self._clock(),
                                  grace=self._policy.unpaid_grace)

    @contextlib.contextmanager
    def _entry_lock(self, shopper_id: str) -> Iterator[None]:
        if self._locks is not None:
            with self._locks.hold(shopper_id):
                yield
        else:
            with self._own_lock:
                yield

    def _open_locked(self, shopper_id: str, entry_method: str) -> str:
        owed = self.entry_refusal(shopper_id)
        if owed is not None:
            raise EntryRefused(owed)
        same = self._same_entry(shopper_id)
        if same is not None:
            return same
        self._close_left_open(shopper_id)
        session_id = f"ses_{uuid.uuid4().hex}"
        self._hold(session_id, shopper_id)
        at = self._clock()
        self._carts.open(session_id, shopper_id, self._store_id, entry_method)
        self._read_model.opened(session_id=session_id, shopper_id=shopper_id,
                                store_id=self._store_id, entry_method=entry_method, at=at)
        return session_id

    def _same_entry(self, shopper_id: str) -> str | None:
        """The shopper's newest open session in this store when it was opened within
        ``policy.same_entry`` and holds nothing but its opening (no item, companion or
        cart device), else None."""
        if self._policy.same_entry <= timedelta(0):
            return None
        open_ids = self._read_model.open_of(shopper_id, store_id=self._store_id)
        if not open_ids:
            return None
        newest = self._read_model.get(open_ids[-1])
        if self._clock() - newest.opened_at > self._policy.same_entry:
            return None
        return newest.id if self._carts.state(newest.id).version == 1 else None

    def _close_left_open(self, shopper_id: str) -> None:
        """A shopper is in the store once: a session of theirs still open (its exit was
        never recorded) goes to the staffed checkout for review, never charged unseen."""
        if self._close_missed is None:
            return
        for old in self._read_model.open_of(shopper_id):
            self._close_missed(old, f"{NO_EXIT_RECORDED}: the shopper entered again at "
                                    f"{self._clock():%Y-%m-%d %H:%M} UTC")

    def _hold(self, session_id: str, shopper_id: str) -> None:
        """Place the entry hold; raises EntryRefused when it is not approved."""
        if self._payment is None or self._policy.hold_minor == 0:
            return
        try:
            outcome = self._payment.hold(
                session_id=session_id, shopper_id=shopper_id,
                token=self._shoppers.payment_token(shopper_id),
                amount_minor=self._policy.hold_minor, currency=self._policy.currency)
        except PaymentError as exc:  # outcome unknown: reconcile releases any hold
            raise EntryRefused(f"payment hold could not be placed ({exc.reason}); "
                               f"{OTHER_WAY}") from exc
        if not outcome.captured:
            raise EntryRefused(f"{outcome.reason}; {OTHER_WAY}")
