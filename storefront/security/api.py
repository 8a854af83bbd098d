"""FastAPI dependencies that authenticate staff (bearer tokens) and devices (signatures).

``require_role("cashier", "manager")`` admits a staff member holding one of the roles;
``require_device("gate")`` admits a signed request from a device of one of the kinds;
``StaffOrDevice`` admits either (read-only views used by both tills and gates).
Failures are 401 (no or bad credentials, with ``WWW-Authenticate``) or 403 (role).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storefront.security.devices_http import H_SIG, DevicePrincipal
from storefront.security.errors import AuthenticationRequired, PermissionDenied
from storefront.security.service import Security
from storefront.security.staff import StaffPrincipal

_bearer = HTTPBearer(auto_error=False, description="staff bearer token from /staff/login")


def security_of(request: Request) -> Security:
    """The container's security services."""
    security: Security = request.app.state.container.security
    return security


def staff_principal(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None,
                                           Depends(_bearer)]) -> StaffPrincipal:
    """The staff member of the bearer token; AuthenticationRequired without one."""
    if credentials is None or not credentials.credentials:
        raise AuthenticationRequired("staff endpoints need 'Authorization: Bearer <token>' "
                                     "from POST /staff/login")
    return security_of(request).staff.authenticate(credentials.credentials)


def require_role(*roles: str) -> Callable[..., StaffPrincipal]:
    """A dependency admitting staff holding one of ``roles`` (403 for other roles)."""

    def dependency(principal: Annotated[StaffPrincipal, Depends(staff_principal)]
                   ) -> StaffPrincipal:
        if principal.role not in roles:
            raise PermissionDenied(f"role {principal.role} may not do this "
                                   f"(needs {' or '.join(roles)})")
        return principal

    return dependency


def device_principal(request: Request) -> DevicePrincipal:
    """The device that signed this request; AuthenticationRequired when unsigned or bad."""
    body: bytes = request.scope.get("state", {}).get("signed_body", b"")
    return security_of(request).devices.verify(
        method=request.method, path=request.url.path,
        query=request.scope.get("query_string", b"").decode("latin-1"), body=body,
        headers=request.headers)


def require_device(*kinds: str) -> Callable[..., DevicePrincipal]:
    """A dependency admitting signed requests from devices of ``kinds`` (403 otherwise)."""

    def dependency(request: Request) -> DevicePrincipal:
        principal = device_principal(request)
        if principal.kind not in kinds:
            raise PermissionDenied(f"a {principal.kind} device may not do this "
                                   f"(needs {' or '.join(kinds)})")
        return principal

    return dependency


def staff_or_device(*roles: str, device_kinds: tuple[str, ...] = ("gate", "cart")
                    ) -> Callable[..., StaffPrincipal | DevicePrincipal]:
    """A dependency admitting staff holding one of ``roles`` or a signed device of one of
    ``device_kinds`` (gates and carts: a shelf plate or scanner reads no session)."""

    def dependency(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(_bearer)]) -> StaffPrincipal | DevicePrincipal:
        if H_SIG in request.headers:
            device = device_principal(request)
            if device.kind not in device_kinds:
                raise PermissionDenied(f"a {device.kind} device may not do this")
            return device
        principal = staff_principal(request, credentials)
        if principal.role not in roles:
            raise PermissionDenied(f"role {principal.role} may not do this")
        return principal

    return dependency


def check_stated_staff(principal: StaffPrincipal, stated: str | None) -> str:
    """The acting staff id: the authenticated one; a different stated id is refused."""
    if stated is not None and stated != principal.id:
        raise PermissionDenied(f"staff_id {stated!r} is not the signed-in staff member")
    return principal.id


CHECKOUT_ROLES = ("cashier", "manager")
Checkout = Annotated[StaffPrincipal, Depends(require_role(*CHECKOUT_ROLES))]
Manager = Annotated[StaffPrincipal, Depends(require_role("manager"))]
Admin = Annotated[StaffPrincipal, Depends(require_role("admin"))]
Auditor = Annotated[StaffPrincipal, Depends(require_role("auditor"))]
Gate = Annotated[DevicePrincipal, Depends(require_device("gate"))]
Cart = Annotated[DevicePrincipal, Depends(require_device("cart"))]
StaffOrDevice = Annotated[StaffPrincipal | DevicePrincipal,
                          Depends(staff_or_device(*CHECKOUT_ROLES))]
