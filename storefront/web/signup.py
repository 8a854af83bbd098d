"""The shopper sign-up page (``/portal/signup``): a new shopper creates an account with
``AccountService.sign_up`` (the same rules as ``POST /auth/signup``) and is signed in.

The payment token is what the card terminal or the processor's card form returns; a card
number is refused (``ShopperService`` checks it).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.accounts import TooManyAttempts
from storefront.api.routers.auth import get_privacy
from storefront.errors import Conflict, InvalidInput
from storefront.web.auth import (
    AnonymousForm,
    NextTarget,
    form_text,
    safe_next,
)
from storefront.web.login import signed_in_shopper
from storefront.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/portal/signup")
def shopper_signup_page(request: Request, next: NextTarget = None) -> Response:  # noqa: A002
    """The form creating a shopper account (then signed in)."""
    return render(request, "portal/signup.html", {"next": safe_next(next, "/portal"),
                                                  "error": None, "values": {}})


@router.post("/portal/signup")
def shopper_signup(request: Request, form: AnonymousForm) -> Response:
    """Create the account (``AccountService.sign_up``), sign it in and go to ``next``;
    the form again with the reason (422, 409 for a registered e-mail, 429 once the
    address has tried too many registered e-mails) otherwise."""
    target = safe_next(form_text(form, "next", 500), "/portal")
    values = {"display_name": form_text(form, "display_name", 200),
              "email": form_text(form, "email", 254),
              "payment_token": form_text(form, "payment_token", 200)}
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    privacy = get_privacy(request, request.app.state.container)
    ip = request.client.host if request.client else "unknown"
    try:
        if password != form.get("password_again"):
            raise InvalidInput("the two passwords differ")
        privacy.accounts.sign_up(email=values["email"], password=password,
                                 display_name=values["display_name"],
                                 payment_token=values["payment_token"], client_ip=ip)
        issued = privacy.accounts.login(email=values["email"], password=password,
                                        client_ip=ip)
    except TooManyAttempts as exc:
        answer = render(request, "portal/signup.html",
                        {"next": target, "error": exc.reason, "values": values},
                        status_code=429)
        answer.headers["Retry-After"] = str(exc.retry_after_s)
        return answer
    except (InvalidInput, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        return render(request, "portal/signup.html",
                      {"next": target, "error": exc.reason, "values": values},
                      status_code=status)
    return signed_in_shopper(request, target, issued.token,
                             "Account created; you are signed in.")
