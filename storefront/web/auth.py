"""Cookie sign-in for the pages, and the checks every page form passes.

The pages use the same tokens as the API (staff tokens from
``security.staff.login``, shopper tokens from ``accounts.login``), carried in a cookie
instead of an ``Authorization`` header:

* cookies are ``HttpOnly`` (no script reads them), ``SameSite=Strict`` (no other site's
  page sends them) and ``Secure`` on HTTPS; the staff cookie is scoped to ``/console``;
* every form that changes something carries a CSRF token derived from the session
  token (HMAC-SHA256, the "HMAC based token" pattern of the OWASP CSRF prevention cheat
  sheet), and a request whose ``Origin`` is another site is refused (403);
* a page needing sign-in without a valid cookie redirects (303) to the login page,
  which returns to the page afterwards (``next``, same-site paths only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Query, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from storefront.accounts import AuthenticationFailed
from storefront.api.routers.auth import get_privacy
from storefront.errors import InvalidInput, StorefrontError
from storefront.security.api import security_of
from storefront.security.errors import AuthenticationRequired, PermissionDenied
from storefront.security.staff import StaffPrincipal

STAFF_COOKIE = "sf_staff"
SHOPPER_COOKIE = "sf_shopper"
STAFF_PATH = "/console"
SHOPPER_PATH = "/"
_CSRF_LABEL = b"storefront-page-csrf-v1"


class LoginRequired(StorefrontError):
    """A page needs sign-in: answered with a redirect to ``login_url``."""

    code = "login_required"

    def __init__(self, login_url: str) -> None:
        super().__init__("please sign in")
        self.login_url = login_url


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256(session token, label), 64 hex chars."""
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def safe_next(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site (``/...``, not ``//host``, at most 500
    characters); else ``default``."""
    if (not target or len(target) > 500 or not target.startswith("/")
            or target.startswith("//") or "\\" in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def login_redirect_url(request: Request, login_path: str) -> str:
    """The login page URL that comes back to the requested page."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{login_path}?next={quote(here, safe='')}"


def set_session_cookie(response: Response, request: Request, *, name: str, token: str,
                       max_age_s: int | None, path: str) -> None:
    """Store a session token in an HttpOnly, SameSite=Strict cookie (Secure on HTTPS).

    ``max_age_s`` None makes a browser-session cookie (gone when the browser closes, as
    a shared kiosk or till needs); the server enforces the token's own expiry anyway.
    """
    response.set_cookie(name, token, max_age=max_age_s, path=path, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, *, name: str, path: str) -> None:
    """Remove a session cookie."""
    response.delete_cookie(name, path=path, httponly=True, samesite="strict")


def check_origin(request: Request) -> None:
    """Refuse (PermissionDenied) a form post whose ``Origin`` is not this site.

    The origin must match scheme, host and port; the opaque origin ``null`` (sandboxed
    frames, some redirects) is refused. A request without ``Origin`` (not a browser
    form post) is let through: the cookies are SameSite=Strict and the CSRF token
    still applies.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return
    sent = urlsplit(origin)
    if (sent.scheme, sent.netloc) != (request.url.scheme, request.url.netloc):
        raise PermissionDenied("this form was sent from another site")


def form_text(form: FormData, name: str, limit: int = 300) -> str:
    """A form field's text, stripped, at most ``limit`` characters; "" when missing or
    not text (a file)."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def form_secret(form: FormData, name: str, limit: int = 1024) -> str:
    """A password field exactly as typed (not stripped: spaces at either end are part of
    a password, as the JSON API takes them), at most ``limit`` characters; "" when
    missing or not text."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def checked_form(request: Request, session_token: str | None) -> FormData:
    """The posted form once its origin and (for a signed-in user) CSRF token are right.

    Raises PermissionDenied with the reason otherwise, and InvalidInput for a field
    holding a NUL character (which PostgreSQL text cannot store).
    """
    check_origin(request)
    form = await request.form()
    if any(isinstance(v, str) and "\x00" in v for _, v in form.multi_items()):
        raise InvalidInput("a form field holds a NUL character")
    if session_token is not None:
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf_token(session_token)):
            raise PermissionDenied("the form is out of date or was not sent from this site; "
                                   "reload the page and try again")
    return form


@dataclass(frozen=True)
class StaffUser:
    """The signed-in staff member of a console page and the page's CSRF token."""

    principal: StaffPrincipal
    token: str
    csrf: str

    @property
    def id(self) -> str:
        """The staff id."""
        return self.principal.id

    @property
    def role(self) -> str:
        """cashier, manager, auditor or admin."""
        return self.principal.role


@dataclass(frozen=True)
class ShopperUser:
    """The signed-in shopper of a portal or kiosk page and the page's CSRF token."""

    shopper_id: str
    token: str
    csrf: str


def _staff_from_cookie(request: Request) -> StaffUser:
    token = request.cookies.get(STAFF_COOKIE)
    if not token:
        raise LoginRequired(login_redirect_url(request, f"{STAFF_PATH}/login"))
    try:
        principal = security_of(request).staff.authenticate(token)
    except AuthenticationRequired as exc:
        raise LoginRequired(login_redirect_url(request, f"{STAFF_PATH}/login")) from exc
    return StaffUser(principal=principal, token=token, csrf=csrf_token(token))


def staff_page(*roles: str) -> Callable[[Request], StaffUser]:
    """A dependency: the signed-in staff member holding one of ``roles`` (403 otherwise)."""

    def dependency(request: Request) -> StaffUser:
        user = _staff_from_cookie(request)
        if roles and user.role not in roles:
            raise PermissionDenied(f"role {user.role} may not use this page "
                                   f"(needs {' or '.join(roles)})")
        return user

    return dependency


def staff_action(*roles: str) -> Callable[[Request], Awaitable[StaffUser]]:
    """Like :func:`staff_page` for a form post: also checks origin and CSRF token."""
    page = staff_page(*roles)

    async def dependency(request: Request) -> StaffUser:
        user = page(request)
        await checked_form(request, user.token)
        return user

    return dependency


def _shopper_from_cookie(request: Request) -> ShopperUser:
    token = request.cookies.get(SHOPPER_COOKIE)
    login = "/portal/login"
    if not token:
        raise LoginRequired(login_redirect_url(request, login))
    privacy = get_privacy(request, request.app.state.container)
    try:
        shopper_id = privacy.accounts.authenticate(token)
    except AuthenticationFailed as exc:
        raise LoginRequired(login_redirect_url(request, login)) from exc
    return ShopperUser(shopper_id=shopper_id, token=token, csrf=csrf_token(token))


def signed_in_user(request: Request) -> StaffUser | ShopperUser | None:
    """The user signed in for the area of ``request`` (console: staff, else shopper),
    or None; never raises (used to show "Sign out" on error pages)."""
    try:
        if request.url.path.startswith(STAFF_PATH):
            return _staff_from_cookie(request)
        return _shopper_from_cookie(request)
    except StorefrontError:
        return None


def shopper_page(request: Request) -> ShopperUser:
    """A dependency: the signed-in shopper (redirect to the portal login otherwise)."""
    return _shopper_from_cookie(request)


async def shopper_action(request: Request) -> ShopperUser:
    """Like :func:`shopper_page` for a form post: also checks origin and CSRF token."""
    user = _shopper_from_cookie(request)
    await checked_form(request, user.token)
    return user


async def anonymous_action(request: Request) -> FormData:
    """A form post made before sign-in (login forms): origin checked, no CSRF token."""
    return await checked_form(request, None)


AnonymousForm = Annotated[FormData, Depends(anonymous_action)]
NextTarget = Annotated[str | None, Query()]
"""``?next=``: where to go after signing in; checked with :func:`safe_next`."""

CHECKOUT = ("cashier", "manager")
CheckoutPage = Annotated[StaffUser, Depends(staff_page(*CHECKOUT))]
CheckoutAction = Annotated[StaffUser, Depends(staff_action(*CHECKOUT))]
AnyStaffPage = Annotated[StaffUser, Depends(staff_page())]
ManagerAction = Annotated[StaffUser, Depends(staff_action("manager"))]
ShopperPage = Annotated[ShopperUser, Depends(shopper_page)]
ShopperAction = Annotated[ShopperUser, Depends(shopper_action)]
