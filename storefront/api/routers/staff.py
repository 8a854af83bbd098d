"""Staffed-checkout and till endpoints (``/staff/...``).

Every endpoint needs a staff bearer token (``POST /staff/login``) of a checkout role
(cashier or manager); the Z report (closing a drawer) and voiding a tender need a
manager. ``staff_id`` in
a body must be the signed-in staff member's id (403 otherwise); it is what is recorded.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from storefront.api.deps import ContainerDep
from storefront.api.schemas import ID_PATTERN, SessionIdPath, StrictCount, Text
from storefront.review import DECISIONS, MAX_REASON, Decision, ReviewQueue
from storefront.security.api import Checkout, Manager, check_stated_staff
from storefront.security.staff import StaffPrincipal
from storefront.staffed import MAX_QUANTITY, StaffedCart

router = APIRouter(prefix="/staff", tags=["staffed checkout"])

StaffId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                               description="the signed-in staff member's id")]
TillIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
TenderIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
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
    """Decide the review flags of one device event, as the staff console's review queue does.

    ``decision`` is required: ``accept`` (the event stands: an event left out of the
    cart for its low confidence goes in as the device reported it), ``correct`` (staff
    counted the goods: the line is set to ``corrected_quantity``, units or grams for
    weighed goods, given with ``correct`` only) or ``reject`` (the event is wrong: what
    it did is undone; an event left out stays out). ``note`` is the reason, recorded
    as ``<decision>: <note>``.
    """

    device_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    device_seq: StrictCount = Field(ge=0, le=2**62)
    decision: Decision
    corrected_quantity: StrictCount | None = Field(default=None, ge=0, le=MAX_QUANTITY)
    note: Text = Field(min_length=1, max_length=MAX_REASON)

    @model_validator(mode="before")
    @classmethod
    def _decision_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("decision") is None:
            raise ValueError(f"decision is required: one of {', '.join(DECISIONS)} (a flag "
                             f"is decided, not only marked resolved)")
        return data

    @model_validator(mode="after")
    def _quantity_with_correct(self) -> FlagResolutionIn:
        if (self.decision == "correct") != (self.corrected_quantity is not None):
            raise ValueError("corrected_quantity is given with decision correct, and only "
                             "with it")
        return self


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


class VoidIn(StaffIn):
    """Void a tender of an open sale; the reason is required and audited."""

    reason: Text = Field(min_length=1, max_length=300)


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
    """The cart with its flags, corrections, tenders, balance and what blocks closing.

    A settled session is its closed sale: the receipt's lines and total, what was paid
    (at the exit and by tenders), no balance due, ``can_close`` false (it is closed);
    ``history_erased`` when its item history was erased (404 only for unknown sessions).
    """
    out = _cart(c.staffed.cart(session_id))
    if out["status"] == "settled":
        out["can_close"] = False
    return out


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
                 c: ContainerDep, who: Checkout) -> dict[str, Any]:
    """Decide the flags of one device event (``storefront.review.ReviewQueue.decide``).

    Returns the decision, the audited correction it made (None when the line was
    right), every flag of the cart and the cart. The same decision sent again (same
    decision, note and quantity) answers with the stored outcome; another decision
    for a resolved flag is 409 with what was decided. A cashier's correction is
    limited as on ``/corrections``; the session is claimed for the decision when
    nobody holds it (409 while another staff member does) and released afterwards.
    """
    done = ReviewQueue.of(c).decide(
        session_id=session_id, device_id=body.device_id, device_seq=body.device_seq,
        staff_id=_acting(who, body), decision=body.decision, reason=body.note,
        corrected_quantity=body.corrected_quantity,
        max_change=None if who.role == "manager"
        else c.security.settings.cashier_correction_limit)
    return asdict(done) | {"cart": _cart(c.staffed.cart(session_id))}


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


@router.post("/sessions/{session_id}/tenders/{tender_id}/void")
def void_tender(session_id: SessionIdPath, tender_id: TenderIdPath, body: VoidIn,
                c: ContainerDep, who: Manager) -> dict[str, Any]:
    """Void a tender of a sale that is not closed (managers only; reason required, audited).

    Cash (tendered minus change) is paid back out of the drawer open at the tender's till
    (the X/Z reports count it as a cash void); a captured card tender is refunded through
    the processor under the key ``void:<tender id>``. The session needs a live claim, the
    manager's or the cashier's working it. The same void sent again answers with the
    voided tender; a card refund whose outcome is unknown (502 ``payment_pending``) is
    finished by sending it again, never refunding twice. 404: no such tender in the
    session; 409: the sale is closed, the tender is a pending card tender or took no
    money, no drawer is open at a cash tender's till, or no claim.
    """
    voided, balance = c.staffed.void_tender(
        session_id=session_id, staff_id=_acting(who, body), tender_id=tender_id,
        reason=body.reason, supervisor=True)
    return {"tender": asdict(voided), "balance_due_minor": balance}


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
    """Running totals of the open drawer; it stays open (404 when none is open: a closed
    drawer's Z report is read with ``GET /staff/tills/{till_id}/drawers``)."""
    return asdict(c.till.x_report(till_id=till_id))


@router.post("/tills/{till_id}/z-report")
def z_report(till_id: TillIdPath, body: DrawerCloseIn, c: ContainerDep,
             who: Manager) -> dict[str, Any]:
    """Final totals: close the drawer, expected vs counted cash and the difference.

    Sent again while no drawer is open at the till (a lost answer), the same body answers
    with the stored Z report of the till's last drawer and changes nothing; another count
    or staff member is refused (409, the reason says who closed it, when, with what count).
    404 when no drawer was ever opened there. Managers only.
    """
    return asdict(c.till.close_drawer(till_id=till_id, staff_id=_acting(who, body),
                                      counted_minor=body.counted_minor))


@router.get("/tills/{till_id}/drawers")
def drawers(till_id: TillIdPath, c: ContainerDep, _who: Manager,
            limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    """The till's cash drawers, newest first (at most ``limit``): the open one as its X
    report, closed ones as their Z reports as given at close (expected, counted and the
    difference, minor units). Managers only, as the Z report."""
    return [asdict(report) for report in c.till.drawers(till_id=till_id, limit=limit)]


@router.get("/tills/{till_id}/drawers/{drawer_id}")
def drawer(till_id: TillIdPath,
           drawer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)],
           c: ContainerDep, _who: Manager) -> dict[str, Any]:
    """One cash drawer of the till: its Z report once closed, else its X report (404 for a
    drawer of another till or none). Managers only, as the Z report."""
    return asdict(c.till.drawer(till_id=till_id, drawer_id=drawer_id))
