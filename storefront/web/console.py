"""Pages of /console: the staff console (sign-in is ``storefront.web.login``).

* ``/console``: live sessions (shoppers in the store now);
* ``/console/checkout``: the staffed checkout (``console_checkout``), with receipts;
* ``/console/review``: the review queue of flagged events (``console_review``);
* ``/console/refunds``: refunds of receipt lines (``console_refunds``);
* ``/console/tills``: cash drawers with X and Z reports (``console_tills``).

Every page needs a checkout role (cashier or manager; others get a 403 page); the Z
report and voiding a tender need a manager. Pages are GETs that change nothing; every
change is a form POST whose origin and CSRF token were checked, calling the same
services, with the same role limits, as the JSON API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.review import ReviewQueue
from storefront.web import console_checkout, console_refunds, console_review, console_tills
from storefront.web.auth import CheckoutPage
from storefront.web.console_forms import container_of
from storefront.web.render import render

router = APIRouter(include_in_schema=False)
LIVE_REFRESH_S = 15


@router.get("/console")
def live(request: Request, user: CheckoutPage) -> Response:
    """Sessions in the store now: shopper, entry time, item count and flag count."""
    sessions = ReviewQueue.of(container_of(request)).live()
    return render(request, "console/live.html", {"nav": "live", "sessions": sessions,
                                                 "refresh_s": LIVE_REFRESH_S}, user=user)


for _module in (console_checkout, console_review, console_refunds, console_tills):
    router.include_router(_module.router)
