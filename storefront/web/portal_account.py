"""Portal pages: deleting the shopper's account.

The confirmation page lists what is erased and what is kept (``docs/privacy.md``) and
asks the shopper to type ``DELETE``. On success the session cookie is cleared and a
goodbye page shows the confirmation returned by the deletion service; the account's
session tokens are erased with it, so the old cookie no longer signs anyone in.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from storefront.errors import StorefrontError
from storefront.web.auth import (
    SHOPPER_COOKIE,
    SHOPPER_PATH,
    ShopperAction,
    ShopperPage,
    clear_session_cookie,
    form_text,
)
from storefront.web.portal_common import privacy_of
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)
ACCOUNT_DELETE = "/portal/account/delete"
CONFIRM_WORD = "DELETE"
LABELS = {
    "palms": "enrolled palms", "templates": "palm templates (stored captures)",
    "shopper_auth_sessions": "sign-in sessions", "biometric_consents": "consent records",
    "privacy_choices": "privacy choices", "privacy_exports": "data exports",
    "exports": "stored data exports ended",
    "entry_codes": "entry codes", "shopper_accounts": "login accounts",
    "cart_events": "cart events of your trips", "shoppers": "profiles (name, payment token)",
    "trips": "trips", "receipts": "receipts", "payments": "payments",
    "other_payments": "other payments",
}
"""Words for the counts in a DeletionConfirmation (unknown keys are shown as they are)."""


@router.get(ACCOUNT_DELETE)
def confirm_delete_account(request: Request, user: ShopperPage) -> Response:
    """What deleting the account erases and keeps, and the typed confirmation."""
    return render(request, "portal/account_delete.html",
                  {"nav": "privacy", "confirm_word": CONFIRM_WORD}, user=user)


@router.post(ACCOUNT_DELETE)
async def delete_account(request: Request, user: ShopperAction) -> Response:
    """Delete the account once ``DELETE`` is typed; sign out and say goodbye.

    A wrong confirmation, or a trip not settled yet (Conflict), comes back to the
    confirmation page with the reason and deletes nothing.
    """
    form = await request.form()
    if form_text(form, "confirm", 20) != CONFIRM_WORD:
        return redirect(request, ACCOUNT_DELETE, kind="error", message=(
            f"Type {CONFIRM_WORD} in capital letters to confirm; nothing was deleted."))
    try:
        done = await run_in_threadpool(privacy_of(request).deletion.delete_account,
                                       shopper_id=user.shopper_id,
                                       actor=f"shopper:{user.shopper_id}")
    except StorefrontError as exc:
        return redirect(request, ACCOUNT_DELETE, message=exc.reason, kind="error")
    response = render(request, "portal/goodbye.html", {"done": done, "labels": LABELS},
                      user=None)
    clear_session_cookie(response, name=SHOPPER_COOKIE, path=SHOPPER_PATH)
    return response
