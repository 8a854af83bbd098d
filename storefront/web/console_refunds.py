"""Console pages of refunds: find a receipt, refund part of a line, show the amendment.

A refund is ``DisputeService.dispute`` called as ``POST /receipts/{id}/disputes`` calls
it: the acting staff member is recorded, and the refund is capped by the role's limit
(``cashier_refund_limit_minor`` or ``manager_refund_limit_minor``; over it nothing
happens and the reason is shown). Each rendered form carries a fresh dispute key, so
sending it twice refunds once; when a card refund fails the page comes back with the
same key, and sending the same refund again resumes it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from storefront.api.routers.receipts import ReceiptIdPath
from storefront.errors import PaymentError
from storefront.staffed import MAX_QUANTITY
from storefront.web import console_forms as forms
from storefront.web.auth import CheckoutAction, CheckoutPage, StaffUser
from storefront.web.console_checkout import FSI, PDI
from storefront.web.console_forms import ACTION_ERRORS, ID_RE, Posted, container_of, failed
from storefront.web.render import money, redirect, render

router = APIRouter(include_in_schema=False)
BASE = "/console/refunds"
QueryText = Annotated[str | None, Query(max_length=200)]


@router.get(BASE)
def find_page(request: Request, user: CheckoutPage, receipt_id: QueryText = None) -> Response:
    """The receipt search; with ``receipt_id`` it goes to that receipt's refund page."""
    if receipt_id is None:
        return render(request, "console/refunds.html", {"nav": "refunds"}, user=user)
    wanted = receipt_id.strip()
    try:
        forms.check_id(wanted, "Receipt id")
        container_of(request).receipts.get(wanted)
    except ACTION_ERRORS as exc:
        return failed(request, BASE, exc)
    return redirect(request, f"{BASE}/{wanted}")


@router.get(BASE + "/{receipt_id}")
def refund_page(receipt_id: ReceiptIdPath, request: Request, user: CheckoutPage,
                key: QueryText = None) -> Response:
    """The receipt's latest version, its lines and the refund form."""
    c = container_of(request)
    doc = c.receipts.get(receipt_id)
    latest = c.receipts.latest(doc.original_receipt_id)
    options = [(line.code, f"{FSI}{line.name}{PDI} ({line.code}): {line.quantity}"
                           f"{' g' if line.sold_by_weight else ''}") for line in latest.lines]
    return render(request, "console/refund.html", {
        "nav": "refunds", "doc": latest, "asked": receipt_id, "options": options,
        "limit": _limit(request, user),
        "key": key if key and ID_RE.fullmatch(key) else forms.new_key()}, user=user)


@router.post(BASE + "/{receipt_id}")
def refund(receipt_id: ReceiptIdPath, request: Request, user: CheckoutAction,
           form: Posted) -> Response:
    """Refund a quantity of one product; then show the amended receipt."""
    back = f"{BASE}/{receipt_id}"
    c = container_of(request)
    key = ""
    try:
        key = forms.ident(form, "key", "The form's key (reload the page)") or ""
        code = forms.ident(form, "product_code", "Product") or ""
        quantity = forms.count(form, "quantity", "Quantity", low=1, high=MAX_QUANTITY)
        reason = forms.required_text(form, "reason", "Reason")
        till_id = forms.ident(form, "till", "Till", required=False)
        done = c.disputes.dispute(receipt_id=receipt_id, dispute_key=key, product_code=code,
                                  quantity=quantity, reason=reason, till_id=till_id,
                                  actor=f"staff:{user.id}", max_refund_minor=_limit(request, user))
    except PaymentError as exc:  # the dispute is kept: the same key resumes its refund
        return failed(request, f"{back}?key={key}", exc)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    cur = c.settings.currency
    return redirect(request, f"/console/receipts/{done.amended_receipt_id}",
                    message=f"Refunded {money(done.refund_minor, cur)} (card "
                            f"{money(done.card_refund_minor, cur)}, cash "
                            f"{money(done.cash_refund_minor, cur)}).")


def _limit(request: Request, user: StaffUser) -> int:
    limits = container_of(request).security.settings
    return (limits.manager_refund_limit_minor if user.role == "manager"
            else limits.cashier_refund_limit_minor)
