"""Staffed-checkout and till endpoints (``/staff/...``).

Every endpoint needs a staff bearer token (``POST /staff/login``) of a checkout role
(cashier or manager); the Z report (closing a drawer) needs a manager. ``staff_id`` in
a body must be the signed-in staff member's id (403 otherwise); it is what is recorded.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from storefront.api.deps import ContainerDep
from storefront.api.schemas import ID_PATTERN, SessionIdPath, StrictCount, Text
from storefront.security.api import Checkout, Manager, check_stated_staff
from storefront.security.staff import StaffPrincipal
from storefront.staffed import StaffedCart

router = APIRouter(prefix="/staff", tags=["staffed checkout"])

StaffId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                               description="the signed-in staff member's id")]
TillIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
Key = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)]
Amount = Annotated[StrictCount, Field(ge=1, le=10**9)]


class StaffIn(BaseModel):
    """A request that only says who makes it."""

    model_config = ConfigDict(extra="forbid")
    staff_id: StaffId


class CorrectionIn(StaffIn):
    """Set a line's quantity (units, or grams for weighed goods; 0 removes it)."""

    product_code: str = Field(min_length=1, max_length=32, pattern=ID_PATTERN)
    quantity: StrictCount = Field(ge=0, le=1_000_000)
    reason: Text = Field(min_length=1, max_length=300)


class FlagResolutionIn(StaffIn):
    """Resolve the review flags of one device event."""

    device_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    device_seq: StrictCount = Field(ge=0, le=2**62)
    note: Text = Field(min_length=1, max_length=300)


class TenderIn(StaffIn):
    """A tender: cash handed over (change is computed) or an amount on a card.

    ``key`` is the client's idempotency key of this tender (a retry sends the same
    key). ``payment_token``: processor token of the card presented (card only;
    default the shopper's card on file).
    """

    kind: Literal["cash", "card"]
    key: Key
    till_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    amount_minor: Amount
    payment_token: Text | None = Field(default=None, min_length=1, max_length=200)


class DrawerOpenIn(StaffIn):
    """Open a cash drawer with a float (minor units)."""

    float_minor: StrictCount = Field(ge=0, le=10**9)


class DrawerCloseIn(StaffIn):
    """Close a drawer with the cash counted in it (minor units)."""

    counted_minor: StrictCount = Field(ge=0, le=10**9)


def _acting(who: StaffPrincipal, body: StaffIn) -> str:
    return check_stated_staff(who, body.staff_id)


def _cart(cart: StaffedCart) -> dict[str, Any]:
    out = asdict(cart)
    out["can_close"] = not cart.blockers
    return out


@router.get("/queue")
def queue(c: ContainerDep, _who: Checkout) -> list[dict[str, Any]]:
    """Sessions waiting at the staffed checkout, oldest first, with reason and live claim."""
    return [{"session_id": view.id, "shopper_id": view.shopper_id, "reason": view.staffed_reason,
             "exited_at": view.exited_at, "total_minor_at_exit": view.total_minor,
             "claim": asdict(claim) if claim else None}
            for view, claim in c.staffed.queue()]


@router.post("/sessions/{session_id}/claim")
def claim(session_id: SessionIdPath, body: StaffIn, c: ContainerDep,
          who: Checkout) -> dict[str, Any]:
    """Claim the session (409 while another staff member holds a live claim)."""
    return asdict(c.staffed.claim(session_id=session_id, staff_id=_acting(who, body)))


@router.post("/sessions/{session_id}/release", status_code=204)
def release(session_id: SessionIdPath, body: StaffIn, c: ContainerDep,
            who: Checkout) -> None:
    """Give the claim up."""
    c.staffed.release(session_id=session_id, staff_id=_acting(who, body))


@router.get("/sessions/{session_id}")
def cart(session_id: SessionIdPath, c: ContainerDep, _who: Checkout) -> dict[str, Any]:
    """The cart with its flags, corrections, tenders, balance and what blocks closing."""
    return _cart(c.staffed.cart(session_id))


@router.post("/sessions/{session_id}/corrections", status_code=201)
def correct(session_id: SessionIdPath, body: CorrectionIn, c: ContainerDep,
            who: Checkout) -> dict[str, Any]:
    """Correct one line (reason required); returns the audited correction and the cart."""
    done = c.staffed.correct(session_id=session_id, staff_id=_acting(who, body),
                             product_code=body.product_code, quantity=body.quantity,
                             reason=body.reason,
                             max_change=None if who.role == "manager"
                             else c.security.settings.cashier_correction_limit)
    return {"correction": asdict(done), "cart": _cart(c.staffed.cart(session_id))}


@router.post("/sessions/{session_id}/flags/resolve")
def resolve_flag(session_id: SessionIdPath, body: FlagResolutionIn,
                 c: ContainerDep, who: Checkout) -> list[dict[str, Any]]:
    """Resolve the flags of one device event; returns every flag of the cart."""
    flags = c.staffed.resolve_flag(session_id=session_id, staff_id=_acting(who, body),
                                   device_id=body.device_id, device_seq=body.device_seq,
                                   note=body.note)
    return [asdict(flag) for flag in flags]


@router.post("/sessions/{session_id}/age-check")
def age_check(session_id: SessionIdPath, body: StaffIn, c: ContainerDep,
              who: Checkout) -> dict[str, Any]:
    """Record that the staff member checked the shopper's age (the first check is kept)."""
    staff, at = c.staffed.confirm_age(session_id=session_id, staff_id=_acting(who, body))
    return {"session_id": session_id, "checked_by": staff, "checked_at": at}


@router.post("/sessions/{session_id}/tenders", status_code=201)
def tender(session_id: SessionIdPath, body: TenderIn, c: ContainerDep,
           who: Checkout) -> dict[str, Any]:
    """Take a tender; a decline is a result (``state`` and ``reason``), not an error.

    The same request sent again (same ``key``, kind, amount and till, and no card or the
    same card) answers with the stored tender, also after the sale is closed; the key
    sent with other content is refused (409, the reason says what the key was used for).
    """
    taken, balance = c.staffed.take_tender(
        session_id=session_id, staff_id=_acting(who, body), kind=body.kind, key=body.key,
        till_id=body.till_id, amount_minor=body.amount_minor, payment_token=body.payment_token)
    return {"tender": asdict(taken), "balance_due_minor": balance}


@router.post("/sessions/{session_id}/close")
def close(session_id: SessionIdPath, body: StaffIn, c: ContainerDep,
          who: Checkout) -> dict[str, Any]:
    """Issue the receipt and settle the session (409 with the reasons while blocked)."""
    return asdict(c.staffed.close(session_id=session_id, staff_id=_acting(who, body)))


@router.post("/tills/{till_id}/open", status_code=201)
def open_drawer(till_id: TillIdPath, body: DrawerOpenIn, c: ContainerDep,
                who: Checkout) -> dict[str, Any]:
    """Open the till's cash drawer with a float (409 when one is open)."""
    return asdict(c.till.open_drawer(till_id=till_id, staff_id=_acting(who, body),
                                     float_minor=body.float_minor))


@router.get("/tills/{till_id}/x-report")
def x_report(till_id: TillIdPath, c: ContainerDep, _who: Checkout) -> dict[str, Any]:
    """Running totals of the open drawer; it stays open."""
    return asdict(c.till.x_report(till_id=till_id))


@router.post("/tills/{till_id}/z-report")
def z_report(till_id: TillIdPath, body: DrawerCloseIn, c: ContainerDep,
             who: Manager) -> dict[str, Any]:
    """Final totals: close the drawer, expected vs counted cash and the difference."""
    return asdict(c.till.close_drawer(till_id=till_id, staff_id=_acting(who, body),
                                      counted_minor=body.counted_minor))
