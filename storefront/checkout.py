"""Exit flow: close the session, price the cart, authorize and capture, issue a receipt.

The payment captures against the hold placed at entry (raised in place or
re-authorized when the total exceeds it, released when the cart is empty).
Anything uncertain (flagged events, age-restricted goods, a total above the
automatic charge limit, decline, processor failure, an abandoned session) sends
the session to the staffed-checkout queue with the reason instead of charging, and
releases the hold. One process at a
time runs a session's exit: it holds a lease on the session row
(``SessionReadModel.claim``); concurrent callers
wait for its result, and a retry after a crash resumes from the stored state
(the priced cart is kept, the payment step reads its own row), so a session is
never charged twice and every caller sees the same outcome.

Writes per paid exit (each committed before the next step): the lease (which also
reads the session row), the exit event, the read model with the priced cart, the
payment journal before and after each processor call, the receipt, the settle event,
and the read model's final row with the lease given back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.projections import CartContents
from cart.service import SessionService
from cart.session import SessionState, SessionStatus
from storefront.catalog import Catalogue, CatalogueItem
from storefront.clock import Clock
from storefront.db.models import Receipt
from storefront.errors import Conflict, InvalidInput, StorefrontError
from storefront.exit_payment import ExitPayment
from storefront.money import format_minor
from storefront.payments import PaymentProcessor
from storefront.pricing import TaxPolicy, price_cart
from storefront.receipts import priced_receipt_lines
from storefront.sessions import SessionReadModel, SessionScope, SessionView
from storefront.shoppers import ShopperService

EXIT_LEASE = timedelta(seconds=30)  # a claim older than this is presumed dead
WAIT_FOR_OTHER_EXIT_S = 15.0  # a concurrent caller waits this long for the result
_POLL_S = 0.05


@dataclass(frozen=True)
class ExitResult:
    """Outcome of an exit: ``paid`` with a receipt, or ``staffed`` with the reason."""

    session_id: str
    status: Literal["paid", "staffed"]
    total_minor: int | None
    currency: str
    receipt_id: str | None
    reason: str | None
    lines: tuple[dict[str, Any], ...]


class CheckoutService:
    """Runs the exit flow and keeps the staffed-checkout queue."""

    def __init__(self, *, sessions: sessionmaker[Session], carts: SessionService,
                 catalogue: Catalogue, processor: PaymentProcessor, shoppers: ShopperService,
                 read_model: SessionReadModel, currency: str, tax: TaxPolicy,
                 clock: Clock, payment: ExitPayment | None = None,
                 exit_lease: timedelta = EXIT_LEASE,
                 max_charge_minor: int | None = None,
                 scope: SessionScope | None = None) -> None:
        """``scope``: an exit of a session of another store is NotFound (None: any)."""
        self._scope = scope
        self._db = sessions
        self._max_charge = max_charge_minor
        self._lease = exit_lease
        self._tax = tax
        self._carts = carts
        self._catalogue = catalogue
        self._shoppers = shoppers
        self._read_model = read_model
        self._currency = currency
        self._clock = clock
        self._payment = payment or ExitPayment(sessions=sessions, processor=processor,
                                               clock=clock)

    def exit(self, session_id: str, *, missed_exit: str | None = None) -> ExitResult:
        """Run, resume, or wait for the exit of ``session_id``; safe to retry and to race.

        ``missed_exit``: the reason a session still open is closed without its shopper
        at the exit gate (they entered again): it goes to the staffed checkout with that
        reason instead of being charged, for staff to review.
        Raises NotFound for an unknown session (or, with a ``scope``, one of another
        store, unless ``missed_exit``), Conflict when another caller's
        exit is still running after ``WAIT_FOR_OTHER_EXIT_S`` seconds.
        """
        if self._scope is not None and missed_exit is None:  # a gate's exit
            self._scope.check(session_id)
        deadline = time.monotonic() + WAIT_FOR_OTHER_EXIT_S
        while True:
            token = uuid.uuid4().hex
            claimed = self._read_model.claim(session_id, token, self._clock(), self._lease)
            if claimed is not None:
                try:
                    # Every answer of _run is written with the lease given back
                    # (SessionReadModel.finish_exit); a failure gives it back here.
                    return self._run(claimed, missed_exit)
                except BaseException:
                    self._read_model.release_exit(session_id, token)
                    raise
            view = self._read_model.get(session_id)
            if view.status in ("settled", "staffed"):
                return self._stored_result(view)
            if time.monotonic() > deadline:
                raise Conflict(f"the exit of session {session_id} is in progress; retry")
            time.sleep(_POLL_S)

    @property
    def clock(self) -> Clock:
        """The clock this checkout stamps times with (tz-aware UTC)."""
        return self._clock

    @property
    def payment(self) -> ExitPayment:
        """The session payment service (hold, capture, release) this checkout uses."""
        return self._payment

    def staffed_queue(self) -> list[dict[str, object]]:
        """Sessions waiting at the staffed checkout, oldest first."""
        queue = []
        for view in self._read_model.with_status("staffed"):
            entry = asdict(view)
            entry.pop("exit_claim")  # internal lease, not for staff
            queue.append(entry)
        return queue

    def _run(self, view: SessionView, missed_exit: str | None = None) -> ExitResult:
        """The exit of a claimed session: close it, price it (once: kept for retries),
        charge it, or send it to staff. Every answer ends with the read model's final
        write, which gives the exit lease back."""
        session_id = view.id
        state, contents, closed_now = self._carts.close_at_exit(session_id)
        status = state.status
        if closed_now and missed_exit is not None:  # an empty cart owes 0, known now
            empty = not (contents.lines or contents.weighed or contents.flags)
            return self._to_staffed(session_id, (), 0 if empty else None, missed_exit,
                                    exited_at=state.exited_at)
        if status in (SessionStatus.SETTLED, SessionStatus.STAFFED):
            return self._resync(view, state)
        if status == SessionStatus.ABANDONED:
            return self._to_staffed(session_id, (), None, "session was abandoned")
        if contents.flags:
            reasons = "; ".join(sorted({flag.reason for flag in contents.flags}))
            return self._to_staffed(session_id, (), None, f"events need review: {reasons}",
                                    exited_at=state.exited_at)
        items: dict[str, CatalogueItem] | None = None
        if view.priced_lines:
            lines, total = view.priced_lines, int(view.total_minor or 0)
        else:
            try:
                # Priced on the exit day, at the store's tax setting; club membership
                # is not recorded yet, so club-only promotions do not apply.
                items = self._catalogue.get_many([*contents.lines, *contents.weighed])
                priced = price_cart(self._quantities(contents, items), self._catalogue,
                                    self._currency, tax=self._tax, on=self._clock().date(),
                                    items=items)
            except StorefrontError as exc:
                return self._to_staffed(session_id, (), None,
                                        f"cart cannot be priced: {exc.reason}",
                                        exited_at=state.exited_at)
            lines = priced_receipt_lines(priced)  # stamped with the rates taxed at
            total = priced.total_minor
        if view.status != "exited" or not view.priced_lines:
            # One write: the read model shows the exit, and the priced cart is kept
            # (committed before any payment call) so a retry charges what was priced.
            self._read_model.update(session_id, status="exited", exited_at=state.exited_at,
                                    priced_lines=list(lines), total_minor=total)
        restricted = self._age_restricted(lines, items)
        if restricted:
            return self._to_staffed(session_id, lines, total,
                                    f"age check needed for {', '.join(restricted)}")
        if self._max_charge is not None and total > self._max_charge:
            return self._to_staffed(
                session_id, lines, total,
                f"total {format_minor(total, self._currency)} is above the automatic charge "
                f"limit of {format_minor(self._max_charge, self._currency)}: needs a staff "
                f"check")
        return self._charge(view, lines, total)

    def _age_restricted(self, lines: tuple[dict[str, Any], ...],
                        items: Mapping[str, CatalogueItem] | None = None) -> list[str]:
        """Codes of age-restricted products among the priced lines (sorted); ``items``:
        the lines' products when just read (else they are read from the catalogue)."""
        codes = [str(line["code"]) for line in lines]
        if items is None or not all(code in items for code in codes):
            items = self._catalogue.get_many(codes)
        return sorted(code for code in codes if items[code].age_restricted)

    def _quantities(self, contents: CartContents,
                    items: Mapping[str, CatalogueItem]) -> dict[str, int]:
        """Units per code, plus grams for goods sold by weight (what pricing expects);
        ``items`` holds the products of the cart.

        Raises InvalidInput for weighed goods the exit cannot price by itself
        (a price-embedded label, a product not sold by weight, a code also
        counted in units, or a product sold by weight that was counted in units,
        not weighed: pricing reads its quantity as grams): staff check those.
        """
        quantities = dict(contents.lines)
        for code in sorted(quantities):
            if items[code].sold_by_weight:
                raise InvalidInput(f"weighed item {code} was counted in units, not weighed: "
                                   f"needs a staff check")
        for code, weighed in contents.weighed.items():
            if weighed.label_price_minor is not None or not items[code].sold_by_weight \
                    or code in quantities:
                raise InvalidInput(f"weighed item {code} needs a staff check")
            quantities[code] = weighed.grams
        return quantities

    def _charge(self, view: SessionView, lines: tuple[dict[str, Any], ...],
                total: int) -> ExitResult:
        outcome = self._payment.charge(
            session_id=view.id, token=self._shoppers.payment_token(view.shopper_id),
            amount_minor=total, currency=self._currency, shopper_id=view.shopper_id)
        if not outcome.captured:
            return self._to_staffed(view.id, lines, total, outcome.reason or "not paid")
        return self._issue_receipt(view, lines, total)

    def _issue_receipt(self, view: SessionView, lines: tuple[dict[str, Any], ...],
                       total: int) -> ExitResult:
        with self._db.begin() as db:
            conn = db.connection()
            # A retried exit that crashed after the receipt but before settling reuses it.
            receipt_id = conn.execute(_RECEIPT_OF, {"sid": view.id}).scalar()
            if receipt_id is None:
                receipt_id = f"rct_{uuid.uuid4().hex}"
                conn.execute(_INSERT_RECEIPT, {
                    "id": receipt_id, "session_id": view.id, "shopper_id": view.shopper_id,
                    "total_minor": total, "currency": self._currency, "lines": list(lines),
                    "issued_at": self._clock()})
        self._carts.settle_once(view.id, receipt_id, total)
        self._read_model.finish_exit(view.id, status="settled", total_minor=total)
        return ExitResult(view.id, "paid", total, self._currency, receipt_id, None, lines)

    def _to_staffed(self, session_id: str, lines: tuple[dict[str, Any], ...],
                    total: int | None, reason: str, *,
                    exited_at: datetime | None = None) -> ExitResult:
        """Release the hold, queue the session for staff with ``reason``; ``exited_at``:
        the exit time to record as well (a session closed by this exit)."""
        reason += self._payment.release(session_id=session_id)
        self._carts.send_to_staffed(session_id, reason)
        exit_time = {} if exited_at is None else {"exited_at": exited_at}
        self._read_model.finish_exit(session_id, status="staffed", staffed_reason=reason,
                                     total_minor=total, priced_lines=list(lines) or None,
                                     **exit_time)
        return ExitResult(session_id, "staffed", total, self._currency, None, reason, lines)

    def _resync(self, view: SessionView, state: SessionState) -> ExitResult:
        """The log moved on but the read model did not (a crash between the two)."""
        if state.status == SessionStatus.SETTLED:
            self._read_model.finish_exit(view.id, status="settled",
                                         total_minor=state.total_minor)
        else:
            self._read_model.finish_exit(view.id, status="staffed",
                                         staffed_reason=state.staffed_reason)
        return self._stored_result(self._read_model.get(view.id))

    def _stored_result(self, view: SessionView) -> ExitResult:
        if view.status == "staffed":
            return ExitResult(view.id, "staffed", view.total_minor, self._currency, None,
                              view.staffed_reason, view.priced_lines)
        with self._db() as db:
            receipt = db.scalars(sa.select(Receipt).where(Receipt.session_id == view.id)).one()
            return ExitResult(view.id, "paid", receipt.total_minor, receipt.currency,
                              receipt.id, None, tuple(receipt.lines))


_RECEIPTS = cast(sa.Table, Receipt.__table__)
_RECEIPT_OF = sa.select(_RECEIPTS.c.id).where(_RECEIPTS.c.session_id == sa.bindparam("sid"))
_INSERT_RECEIPT = sa.insert(_RECEIPTS)
