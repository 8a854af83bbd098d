"""Pages of /portal: the signed-in shopper's account, trips, palms and privacy choices.

Every page acts on the shopper of the session cookie only (``ShopperPage`` /
``ShopperAction``); ids of another shopper's receipt, palm or export answer the
404 page exactly like ids that do not exist. The pages call the same services as
the ``/me`` JSON API (``storefront.privacy``, ``storefront.disputes``).

This module holds the overview and the one-time entry code and includes the other
portal routers: trips and receipts (``portal_trips``), palms (``portal_palms``),
privacy and data (``portal_privacy``) and account deletion (``portal_account``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.accounts import TooManyAttempts
from storefront.errors import EntryRefused
from storefront.privacy.one_time_codes import IssuedCode
from storefront.web import portal_account, portal_palms, portal_privacy, portal_trips
from storefront.web.auth import ShopperAction, ShopperPage, ShopperUser
from storefront.web.portal_common import privacy_of
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)
for _module in (portal_trips, portal_palms, portal_privacy, portal_account):
    router.include_router(_module.router)


def _overview(request: Request, user: ShopperUser, code: IssuedCode | None) -> Response:
    p = privacy_of(request)
    context: dict[str, Any] = {
        "nav": "overview", "profile": p.portal.profile(user.shopper_id),
        "palms": len(p.portal.palms(user.shopper_id)),
        "trips": len(p.portal.trips(user.shopper_id)), "entry_code": code}
    return render(request, "portal/overview.html", context, user=user)


@router.get("/portal")
def overview(request: Request, user: ShopperPage) -> Response:
    """My account: profile facts, how many palms and trips, links to the other pages."""
    return _overview(request, user, None)


@router.post("/portal/entry-code")
def entry_code(request: Request, user: ShopperAction) -> Response:
    """Issue a single-use entry code (valid 2 minutes) and show it on the overview.

    The code is shown in this answer only (never put in a cookie or a URL); reloading
    asks for a new one.
    """
    try:
        code = privacy_of(request).entry_codes.issue(user.shopper_id)
    except (TooManyAttempts, EntryRefused) as exc:  # say why on the page
        return redirect(request, "/portal", message=exc.reason, kind="error")
    return _overview(request, user, code)
