"""Sign-in and sign-out pages of the staff console and the shopper portal.

Staff sign in with id, password and, for managers and admins, the 6-digit TOTP code
(``SecurityService.staff.login``); shoppers with e-mail, password and their TOTP code
when they turned it on (``AccountService.login``, rate-limited per account and
address). Failures show one message that does not say which part was wrong.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from storefront.accounts import AuthenticationFailed, TooManyAttempts
from storefront.api.routers.auth import get_privacy
from storefront.security.api import security_of
from storefront.security.errors import AuthenticationRequired
from storefront.web.auth import (
    SHOPPER_COOKIE,
    SHOPPER_PATH,
    STAFF_COOKIE,
    STAFF_PATH,
    AnonymousForm,
    NextTarget,
    ShopperPage,
    StaffUser,
    checked_form,
    clear_session_cookie,
    form_secret,
    form_text,
    safe_next,
    set_session_cookie,
    staff_page,
)
from storefront.web.render import redirect, render

router = APIRouter(include_in_schema=False)


@router.get(f"{STAFF_PATH}/login")
def staff_login_page(request: Request, next: NextTarget = None) -> Response:  # noqa: A002
    """The staff sign-in form."""
    return render(request, "console/login.html",
                  {"next": safe_next(next, STAFF_PATH), "error": None})


@router.post(f"{STAFF_PATH}/login")
def staff_login(request: Request, form: AnonymousForm) -> Response:
    """Check the staff credentials; on success set the cookie and go to ``next``."""
    target = safe_next(form_text(form, "next", 500), STAFF_PATH)
    staff_id = form_text(form, "staff_id", 64)
    code = form_text(form, "totp", 6) or None
    try:
        issued = security_of(request).staff.login(
            staff_id=staff_id, password=form_secret(form, "password"),
            totp=code if code and code.isdigit() else None,
            client_ip=request.client.host if request.client else "unknown")
    except (AuthenticationRequired, TooManyAttempts) as exc:
        status = 429 if isinstance(exc, TooManyAttempts) else 401
        return render(request, "console/login.html",
                      {"next": target, "error": exc.reason, "staff_id": staff_id},
                      status_code=status)
    response = redirect(request, target, message=f"Signed in as {issued.staff_id} "
                                                 f"({issued.role}).")
    set_session_cookie(response, request, name=STAFF_COOKIE, token=issued.token,
                       max_age_s=None, path=STAFF_PATH)
    return response


@router.post(f"{STAFF_PATH}/logout")
async def staff_logout(request: Request) -> Response:
    """Revoke the staff token and clear the cookie."""
    user: StaffUser = staff_page()(request)
    await checked_form(request, user.token)
    security_of(request).staff.logout(user.token)
    response = redirect(request, f"{STAFF_PATH}/login", message="Signed out.")
    clear_session_cookie(response, name=STAFF_COOKIE, path=STAFF_PATH)
    return response


@router.get("/portal/login")
def shopper_login_page(request: Request, next: NextTarget = None) -> Response:  # noqa: A002
    """The shopper sign-in form."""
    return render(request, "portal/login.html", {"next": safe_next(next, "/portal"),
                                                 "error": None})


@router.post("/portal/login")
def shopper_login(request: Request, form: AnonymousForm) -> Response:
    """Check the shopper's credentials; on success set the cookie and go to ``next``."""
    target = safe_next(form_text(form, "next", 500), "/portal")
    email = form_text(form, "email", 254)
    code = form_text(form, "totp", 6) or None
    privacy = get_privacy(request, request.app.state.container)
    ip = request.client.host if request.client else "unknown"
    try:
        issued = privacy.accounts.login(email=email, password=form_secret(form, "password"),
                                        client_ip=ip,
                                        totp_code=code if code and code.isdigit() else None)
    except (AuthenticationFailed, TooManyAttempts) as exc:
        status = 429 if isinstance(exc, TooManyAttempts) else 401
        return render(request, "portal/login.html",
                      {"next": target, "error": exc.reason, "email": email},
                      status_code=status)
    return signed_in_shopper(request, target, issued.token, "Signed in.")


def signed_in_shopper(request: Request, target: str, token: str, message: str) -> Response:
    """The redirect to ``target`` (with ``message``) that sets the shopper's session cookie
    (a browser-session cookie, as on a shared kiosk)."""
    response = redirect(request, target, message=message)
    set_session_cookie(response, request, name=SHOPPER_COOKIE, token=token, max_age_s=None,
                       path=SHOPPER_PATH)
    return response


@router.post("/portal/logout")
async def shopper_logout(request: Request, user: ShopperPage) -> Response:
    """Revoke the shopper's token and clear the cookie."""
    await checked_form(request, user.token)
    get_privacy(request, request.app.state.container).accounts.logout(user.token)
    response = redirect(request, "/portal/login", message="Signed out.")
    clear_session_cookie(response, name=SHOPPER_COOKIE, path=SHOPPER_PATH)
    return response


