"""Console pages of the staffed checkout: the queue, one session's sale, and receipts.

The pages call ``StaffedCheckout`` exactly as ``storefront.api.routers.staff`` does:
the acting staff member is the signed-in one, a cashier's corrections are limited to
``cashier_correction_limit`` (managers have none), every change needs the session's
claim. Each rendered tender form carries a fresh idempotency key, so sending the same
form twice takes the tender once. Voiding a tender is for managers only (a cashier's
post is refused with 403, as the API refuses it), under the manager's claim or the
cashier's working the session; sending the same void again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.api.routers.receipts import ReceiptIdPath
from storefront.api.schemas import SessionIdPath
from storefront.bootstrap import Container
from storefront.errors import InvalidInput, NotFound, StorefrontError
from storefront.staffed import MAX_QUANTITY, StaffedCart
from storefront.till import PAID_STATES, TenderView
from storefront.web import console_forms as forms
from storefront.web.auth import CheckoutAction, CheckoutPage, ManagerAction, StaffUser, form_text
from storefront.web.console_forms import ACTION_ERRORS, Posted, container_of, failed
from storefront.web.render import money, redirect, render

router = APIRouter(include_in_schema=False)
BASE = "/console/checkout"
DEFAULT_TILL = "till-1"
FSI, PDI = "\u2068", "\u2069"  # isolate a name inside an <option>'s plain text


@dataclass(frozen=True)
class ProductOption:
    """A product staff may correct: its code and a label with the name isolated."""

    code: str
    label: str


@router.get(BASE)
def queue(request: Request, user: CheckoutPage) -> Response:
    """Sessions waiting at the staffed checkout, oldest exit first, with live claims."""
    c = container_of(request)
    rows = c.staffed.queue()
    names = {view.shopper_id: _name_of(c, view.shopper_id) for view, _ in rows}
    return render(request, "console/queue.html",
                  {"nav": "checkout", "rows": rows, "names": names,
                   "currency": c.settings.currency}, user=user)


def _name_of(c: Container, shopper_id: str) -> str | None:
    """The shopper's display name; None once the account is deleted."""
    try:
        return c.shoppers.get(shopper_id).display_name
    except NotFound:
        return None


@router.get(BASE + "/{session_id}")
def session_page(session_id: SessionIdPath, request: Request, user: CheckoutPage) -> Response:
    """One session's sale: facts, lines, flags, blockers and the forms to finish it."""
    c = container_of(request)
    cart = c.staffed.cart(session_id)
    receipt_id = cart.receipt_id if cart.status == "settled" else None
    return render(request, "console/session.html", {
        "nav": "checkout", "cart": cart, "shopper_name": _shopper_name(request, cart),
        "products": _products(request, cart), "receipt_id": receipt_id,
        "mine": cart.claim is not None and cart.claim.staff_id == user.id,
        "key": forms.new_key(), "due": forms.major(max(cart.balance_due_minor or 0, 0)),
        "till": DEFAULT_TILL, "back": f"{BASE}/{session_id}",
        "voidable": [t for t in cart.tenders if t.state in PAID_STATES]}, user=user)


@router.post(BASE + "/{session_id}/claim")
def claim(session_id: SessionIdPath, request: Request, user: CheckoutAction) -> Response:
    """Claim the session for the signed-in staff member."""
    back = f"{BASE}/{session_id}"
    try:
        held = container_of(request).staffed.claim(session_id=session_id, staff_id=user.id)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, back, message=f"You hold session {session_id} until "
                                           f"{held.expires_at:%H:%M} UTC (renewed as you work).")


@router.post(BASE + "/{session_id}/release")
def release(session_id: SessionIdPath, request: Request, user: CheckoutAction) -> Response:
    """Give the claim up."""
    back = f"{BASE}/{session_id}"
    try:
        container_of(request).staffed.release(session_id=session_id, staff_id=user.id)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, back, message=f"Released session {session_id}.")


@router.post(BASE + "/{session_id}/correct")
def correct(session_id: SessionIdPath, request: Request, user: CheckoutAction,
            form: Posted) -> Response:
    """Set one line's quantity (reason required, audited; the cashier limit applies)."""
    back = f"{BASE}/{session_id}"
    c = container_of(request)
    try:
        other = forms.ident(form, "other_code", "Other product code", required=False)
        code = other or forms.ident(form, "product_code", "Product", required=False)
        if code is None:
            raise InvalidInput("choose a product, or type another product code")
        quantity = forms.count(form, "quantity", "New quantity", low=0, high=MAX_QUANTITY)
        reason = forms.required_text(form, "reason", "Reason")
        done = c.staffed.correct(session_id=session_id, staff_id=user.id, product_code=code,
                                 quantity=quantity, reason=reason,
                                 max_change=_correction_limit(request, user))
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, back, message=f"Corrected {code}: {done.quantity_before} -> "
                                           f"{done.quantity_after}.")


@router.post(BASE + "/{session_id}/age-check")
def age_check(session_id: SessionIdPath, request: Request, user: CheckoutAction) -> Response:
    """Record that the signed-in staff member checked the shopper's age."""
    back = f"{BASE}/{session_id}"
    try:
        staff, _ = container_of(request).staffed.confirm_age(session_id=session_id,
                                                             staff_id=user.id)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, back, message=f"Age check recorded (by {staff}).")


@router.post(BASE + "/{session_id}/tender")
def tender(session_id: SessionIdPath, request: Request, user: CheckoutAction,
           form: Posted) -> Response:
    """Take a cash or card tender; the form's key makes a re-post a replay, not a second one."""
    back = f"{BASE}/{session_id}"
    c = container_of(request)
    try:
        kind = form_text(form, "kind", 10)
        if kind not in ("cash", "card"):
            raise InvalidInput("choose the tender: Cash or Card")
        amount = forms.amount_minor(form, "amount", "Amount", allow_zero=False)
        till_id = forms.ident(form, "till", "Till") or DEFAULT_TILL
        key = forms.ident(form, "key", "The form's key") or ""
        token = form_text(form, "payment_token", 200) or None
        taken, balance = c.staffed.take_tender(
            session_id=session_id, staff_id=user.id, kind=kind,  # type: ignore[arg-type]
            key=key, till_id=till_id, amount_minor=amount, payment_token=token)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    message, ok = _tender_message(taken, balance, c.settings.currency)
    return redirect(request, back, message=message, kind="ok" if ok else "error")


@router.post(BASE + "/{session_id}/void")
def void(session_id: SessionIdPath, request: Request, user: ManagerAction,
         form: Posted) -> Response:
    """Void a tender of the open sale (managers only; reason required, audited
    ``tender_voided``): cash is paid back out of the drawer open at its till, a card
    tender is refunded (``StaffedCheckout.void_tender``, as a supervisor)."""
    back = f"{BASE}/{session_id}"
    c = container_of(request)
    try:
        tender_id = forms.ident(form, "tender_id", "Tender") or ""
        reason = forms.required_text(form, "reason", "Reason")
        voided, balance = c.staffed.void_tender(session_id=session_id, staff_id=user.id,
                                                tender_id=tender_id, reason=reason,
                                                supervisor=True)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, back, message=_void_message(voided, balance, c.settings.currency))


@router.post(BASE + "/{session_id}/close")
def close(session_id: SessionIdPath, request: Request, user: CheckoutAction) -> Response:
    """Issue the receipt and settle the session; then show the receipt."""
    back = f"{BASE}/{session_id}"
    try:
        done = container_of(request).staffed.close(session_id=session_id, staff_id=user.id)
    except ACTION_ERRORS as exc:
        return failed(request, back, exc)
    return redirect(request, f"/console/receipts/{done.receipt_id}",
                    message=f"Sale closed: total {money(done.total_minor, done.currency)}, "
                            f"change {money(done.change_minor, done.currency)}.")


@router.get("/console/receipts/{receipt_id}")
def receipt(receipt_id: ReceiptIdPath, request: Request, user: CheckoutPage) -> Response:
    """A receipt (or amended receipt) with its lines, tax, total, payments and change."""
    doc = container_of(request).receipts.get(receipt_id)
    return render(request, "console/receipt.html",
                  {"nav": "checkout", "doc": doc,
                   "change": sum(p.change_minor for p in doc.payments)}, user=user)


def _correction_limit(request: Request, user: StaffUser) -> int | None:
    if user.role == "manager":
        return None
    return container_of(request).security.settings.cashier_correction_limit


def _tender_message(taken: TenderView, balance: int, currency: str) -> tuple[str, bool]:
    due = f"Balance due {money(max(balance, 0), currency)}."
    if taken.state == "taken":
        return (f"Cash {money(taken.amount_minor, currency)} taken: "
                f"{money(taken.tendered_minor, currency)} tendered, change "
                f"{money(taken.change_minor, currency)}. {due}", True)
    if taken.state == "captured":
        return f"Card payment of {money(taken.amount_minor, currency)} captured. {due}", True
    return f"Card tender {taken.state}: {taken.reason or 'no reason given'}. {due}", False


def _void_message(voided: TenderView, balance: int | None, currency: str) -> str:
    """What a void did: where the money went back and the balance now due."""
    amount = money(voided.amount_minor, currency)
    gone = (f"{amount} cash paid back out of the drawer at till {voided.till_id}"
            if voided.kind == "cash" else
            f"{amount} refunded to the card (refund {voided.void_refund_id})")
    due = "" if balance is None else f" Balance due {money(max(balance, 0), currency)}."
    return f"Tender {voided.id} voided: {gone}.{due}"


def _shopper_name(request: Request, cart: StaffedCart) -> str | None:
    return _name_of(container_of(request), cart.shopper_id)


def _products(request: Request, cart: StaffedCart) -> list[ProductOption]:
    """The codes a correction may name: priced lines, raw cart lines, weighed goods, flags."""
    c = container_of(request)
    names: dict[str, Any] = {str(line["code"]): line["name"] for line in cart.lines}
    raw = c.carts.cart(cart.session_id)
    codes = set(names) | set(raw.lines) | set(raw.weighed) \
        | {f.product_code for f in cart.flags if f.product_code}
    for code in sorted(codes - set(names)):
        try:
            names[code] = c.catalogue.get(code).name
        except StorefrontError:
            names[code] = None
    return [ProductOption(code, f"{FSI}{names[code]}{PDI} ({code})" if names[code] else code)
            for code in sorted(codes)]
