"""Portal pages: trips and receipts, and disputing a receipt line.

A shopper may dispute a line of their own receipt and be refunded at once up to
``SecuritySettings.shopper_dispute_limit_minor`` per dispute (minor units); a larger
refund, or a receipt paid partly in cash (paid out of a till), is for the store's
staffed checkout. Each rendered dispute form carries a fresh idempotency key, so a
double-clicked or re-sent form refunds once.
"""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.errors import NotFound, PaymentError, StorefrontError
from storefront.receipts import ReceiptDocument
from storefront.security.errors import PermissionDenied
from storefront.web.auth import ShopperAction, ShopperPage, form_text
from storefront.web.portal_common import IdPath, container_of, privacy_of
from storefront.web.render import money, redirect, render

router = APIRouter(include_in_schema=False)
_FORM_KEY = re.compile(r"^[A-Za-z0-9-]{1,40}$")
_QUANTITY = re.compile(r"^[0-9]{1,9}$")


def own_receipt(request: Request, shopper_id: str, receipt_id: str) -> ReceiptDocument:
    """The latest version of ``receipt_id`` when it is the shopper's; NotFound otherwise."""
    try:
        document = container_of(request).receipts.latest(receipt_id)
    except NotFound:
        document = None
    if document is None or document.shopper_id != shopper_id:
        raise NotFound(f"receipt {receipt_id!r} does not exist")
    return document


def _dispute_limit(request: Request) -> int:
    return int(container_of(request).security.settings.shopper_dispute_limit_minor)


@router.get("/portal/trips")
def trips(request: Request, user: ShopperPage) -> Response:
    """My trips, newest first, with a link to each receipt."""
    rows = privacy_of(request).portal.trips(user.shopper_id)
    return render(request, "portal/trips.html", {"nav": "trips", "trips": rows}, user=user)


@router.get("/portal/receipts/{receipt_id}")
def receipt(request: Request, receipt_id: IdPath, user: ShopperPage) -> Response:
    """One of my receipts (its latest version) with a dispute form per line."""
    document = own_receipt(request, user.shopper_id, receipt_id)
    paid_cash = any(p.kind == "cash" for p in document.payments)
    return render(request, "portal/receipt.html", {
        "nav": "trips", "receipt": document, "receipt_id": receipt_id,
        "form_key": uuid.uuid4().hex, "paid_cash": paid_cash,
        "limit_minor": _dispute_limit(request)}, user=user)


@router.post("/portal/receipts/{receipt_id}/disputes")
async def dispute(request: Request, receipt_id: IdPath, user: ShopperAction) -> Response:
    """Dispute some of one line: refund up to the shopper limit, then the amended receipt."""
    here = f"/portal/receipts/{receipt_id}"
    document = own_receipt(request, user.shopper_id, receipt_id)
    form = await request.form()
    code, key = form_text(form, "product_code", 32), form_text(form, "dispute_key", 40)
    quantity_text = form_text(form, "quantity", 12)
    if not _FORM_KEY.match(key):
        return redirect(request, here, kind="error",
                        message="The form is out of date; please try again.")
    if not _QUANTITY.match(quantity_text) or int(quantity_text) < 1:
        return redirect(request, here, kind="error",
                        message="Quantity to dispute must be a whole number of at least 1.")
    limit = _dispute_limit(request)
    try:
        result = container_of(request).disputes.dispute(
            receipt_id=document.original_receipt_id, product_code=code,
            dispute_key=f"portal-{user.shopper_id}-{key}", quantity=int(quantity_text),
            reason=form_text(form, "reason", 301), actor=f"shopper:{user.shopper_id}",
            max_refund_minor=limit)
    except PermissionDenied:
        return redirect(request, here, kind="error", message=(
            f"This refund is more than the {money(limit, document.currency)} you can claim "
            "here. Please ask at the store's staffed checkout; nothing was refunded."))
    except PaymentError:
        return redirect(request, here, kind="error", message=(
            "Your dispute is recorded, but the refund could not be sent to your card just "
            "now. Please ask at the store's staffed checkout to complete it."))
    except StorefrontError as exc:
        return redirect(request, here, kind="error", message=exc.reason)
    refunded = money(result.refund_minor, document.currency)
    return redirect(request, here, message=f"Refunded {refunded} to your card. "
                                           "The amended receipt is shown below.")
