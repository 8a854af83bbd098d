"""Console page of the review queue: every unresolved flag, and the form deciding one.

Listing and deciding are ``storefront.review.ReviewQueue``; a cashier's corrections
are limited to ``cashier_correction_limit`` as in the staffed-checkout API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.errors import InvalidInput
from storefront.review import ReviewQueue
from storefront.staffed import MAX_QUANTITY
from storefront.web import console_forms as forms
from storefront.web.auth import CheckoutAction, CheckoutPage, form_text, safe_next
from storefront.web.console_forms import ACTION_ERRORS, Posted, container_of, failed
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)
BASE = "/console/review"


@router.get(BASE)
def review_page(request: Request, user: CheckoutPage) -> Response:
    """Unresolved flags of sessions not settled, oldest first, each with its decision form."""
    items = ReviewQueue.of(container_of(request)).pending()
    return render(request, "console/review.html", {"nav": "review", "items": items,
                                                   "back": BASE}, user=user)


@router.post(BASE + "/decide")
def decide(request: Request, user: CheckoutAction, form: Posted) -> Response:
    """Accept, correct or reject one flag with a reason; back to the page it came from."""
    back = _back(form_text(form, "back", 200))
    c = container_of(request)
    try:
        session_id = forms.ident(form, "session_id", "Session") or ""
        device_id = forms.ident(form, "device_id", "Device") or ""
        device_seq = forms.count(form, "device_seq", "Sequence", low=0, high=2**62)
        decision = form_text(form, "decision", 20)
        if decision not in ("accept", "correct", "reject"):
            raise InvalidInput("choose a decision: Accept, Correct or Reject")
        quantity = None
        if decision == "correct":
            quantity = forms.count(form, "corrected_quantity", "Corrected quantity",
                                   low=0, high=MAX_QUANTITY)
        reason = forms.required_text(form, "reason", "Reason", limit=250)
        done = ReviewQueue.of(c).decide(
            session_id=session_id, device_id=device_id, device_seq=device_seq,
            staff_id=user.id, decision=decision, reason=reason, corrected_quantity=quantity,
            max_change=None if user.role == "manager"
            else c.security.settings.cashier_correction_limit)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    change = (f"; {done.correction.product_code} {done.correction.quantity_before} -> "
              f"{done.correction.quantity_after}" if done.correction else "")
    return redirect(request, back, message=f"Flag {device_id}#{device_seq} of {session_id} "
                                           f"resolved ({decision}{change}).")


def _back(target: str) -> str:
    """Where to return: a console page named by the form, else the review queue."""
    page = safe_next(target, BASE)
    return page if page == "/console" or page.startswith("/console/") else BASE
