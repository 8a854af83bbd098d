"""Shopping-session endpoints: item events, session view, exit, staffed queue."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter

from cart.errors import SessionNotFound
from cart.projections import CartContents
from storefront.api.deps import ContainerDep
from storefront.api.schemas import (
    CartLineOut,
    ExitOut,
    ItemEventIn,
    ItemEventOut,
    SessionIdPath,
    SessionOut,
)
from storefront.db.models import Receipt
from storefront.devices.routing import check_not_ahead
from storefront.security.api import Cart, Checkout, Gate, StaffOrDevice
from storefront.security.errors import PermissionDenied

router = APIRouter(tags=["sessions"])


@router.post("/sessions/{session_id}/events", response_model=ItemEventOut, status_code=201)
def record_event(session_id: SessionIdPath, body: ItemEventIn, c: ContainerDep,
                 device: Cart) -> ItemEventOut:
    """Append an item event once; a replay of (device id, sequence) is 409.

    Signed cart devices only, each for its own ``device_id`` (403 otherwise). A
    ``sensor_time`` more than ``device_max_future_skew_s`` ahead of the server clock is
    422 ``device_time_in_future`` and nothing is stored (late times are accepted).
    """
    if body.device_id != device.id:
        raise PermissionDenied(f"device {device.id} may not send events as {body.device_id}")
    check_not_ahead(body.sensor_time - c.checkout.clock(), what="sensor_time",
                    max_ahead=timedelta(seconds=c.settings.device_max_future_skew_s))
    stored = c.ingest.record(session_id=session_id, kind=body.kind,
                             product_code=body.product_code, quantity=body.quantity,
                             device_id=body.device_id, device_seq=body.device_seq,
                             sensor_time=body.sensor_time, confidence=body.confidence)
    return ItemEventOut(session_id=session_id, version=stored.version, position=stored.position)


class SessionViewOut(SessionOut):
    """The session as ``SessionOut``, plus ``receipt_id`` once it is settled.

    ``history_erased``: the item history (the cart event log) of this settled session
    was erased by account deletion or retention; ``cart`` and ``flags`` are then empty
    and ``notice`` says so. The session row itself (status, times, total) is kept.
    """

    receipt_id: str | None = None
    history_erased: bool = False
    notice: str | None = None


ERASED_NOTICE = ("the item history of this session was erased (account deletion or "
                 "retention): only the kept record (status, times, total, receipt) is shown")


@router.get("/sessions/{session_id}", response_model=SessionViewOut)
def get_session(session_id: SessionIdPath, c: ContainerDep,
                _who: StaffOrDevice) -> SessionViewOut:
    """The session with its current cart (derived from the event log) and flags
    (checkout staff or a signed gate or cart); 404 for an unknown session or one of
    another store.

    A settled session whose item history was erased (its shopper's account deleted,
    or retention) answers with its kept row, an empty cart and ``history_erased``.
    """
    c.read_model.require_in_store(session_id)
    view = c.read_model.get(session_id)
    try:
        contents: CartContents | None = c.carts.cart(session_id)
    except SessionNotFound:
        if view.status != "settled":
            raise
        contents = None  # erased with the account or by retention; the row is kept
    receipt_id = None
    if view.status == "settled":
        with c.db() as db:
            receipt_id = db.scalars(sa.select(Receipt.id)
                                    .where(Receipt.session_id == session_id)).first()
    lines = sorted(contents.lines.items()) if contents is not None else []
    return SessionViewOut(
        id=view.id, shopper_id=view.shopper_id, status=view.status,
        entry_method=view.entry_method, opened_at=view.opened_at, exited_at=view.exited_at,
        total_minor=view.total_minor, staffed_reason=view.staffed_reason,
        cart=[CartLineOut(product_code=k, quantity=v) for k, v in lines],
        flags=[flag.reason for flag in contents.flags] if contents is not None else [],
        receipt_id=receipt_id, history_erased=contents is None,
        notice=ERASED_NOTICE if contents is None else None)


@router.post("/sessions/{session_id}/exit", response_model=ExitOut)
def exit_session(session_id: SessionIdPath, c: ContainerDep, _gate: Gate) -> ExitOut:
    """Close the session, price, charge, and return the receipt (or the staffed reason);
    signed gate devices only."""
    result = c.checkout.exit(session_id)
    return ExitOut(session_id=result.session_id, status=result.status,
                   total_minor=result.total_minor, currency=result.currency,
                   receipt_id=result.receipt_id, reason=result.reason, lines=list(result.lines))


@router.get("/checkout/staffed")
def staffed_queue(c: ContainerDep, _who: Checkout) -> list[dict[str, object]]:
    """Sessions waiting at the staffed checkout, with the reason, oldest first (staff)."""
    return c.checkout.staffed_queue()
