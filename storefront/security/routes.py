"""Staff login and accounts, and the audit log (``/staff/login``, ``/staff/accounts``, ``/audit``).

Passwords, one-time codes and tokens are never logged: they travel only in request
and response bodies. Account changes (``/staff/accounts/{staff_id}/...``, admins only)
are :class:`storefront.security.staff_admin.StaffAdmin`'s: audited, and all but enabling
revoke the member's tokens.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from storefront.security.api import Admin, Auditor, _bearer, security_of, staff_principal
from storefront.security.staff import ROLES, StaffPrincipal

router = APIRouter(tags=["staff accounts and audit"])
_ID = r"^[A-Za-z0-9._-]{1,64}$"
StaffIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID)]


class LoginIn(BaseModel):
    """Staff credentials; ``totp`` is the 6-digit code (managers and admins)."""

    model_config = ConfigDict(extra="forbid")
    staff_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class StaffAccountIn(BaseModel):
    """A new staff account (admins only)."""

    model_config = ConfigDict(extra="forbid")
    staff_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")
    password: str = Field(min_length=12, max_length=1024)


@router.post("/staff/login")
def login(body: LoginIn, request: Request) -> dict[str, Any]:
    """Exchange credentials for a bearer token (401 with one message for every failure;
    429 with ``Retry-After`` after too many failures for the id or the address)."""
    issued = security_of(request).staff.login(
        staff_id=body.staff_id, password=body.password, totp=body.totp,
        client_ip=request.client.host if request.client else "unknown")
    return {"token": issued.token, "token_type": "bearer", "staff_id": issued.staff_id,
            "role": issued.role, "expires_in_s": issued.expires_in_s}


@router.post("/staff/logout", status_code=204)
def logout(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
           _who: Annotated[StaffPrincipal, Depends(staff_principal)]) -> None:
    """Revoke the bearer token of this request."""
    if credentials is not None:
        security_of(request).staff.logout(credentials.credentials)


@router.get("/staff/me")
def me(who: Annotated[StaffPrincipal, Depends(staff_principal)]) -> dict[str, Any]:
    """The signed-in staff member and role."""
    return asdict(who)


@router.post("/staff/accounts", status_code=201)
def add_account(body: StaffAccountIn, request: Request, who: Admin) -> dict[str, Any]:
    """Create a staff account; the TOTP secret and URI are in this answer only."""
    security = security_of(request)
    created = security.staff.add(staff_id=body.staff_id, role=body.role, password=body.password)
    security.audit.record(actor=f"staff:{who.id}", action="staff_added",
                          subject=f"staff:{created.id}", details={"role": created.role})
    return asdict(created)


class PasswordIn(BaseModel):
    """A new password for a staff account (12 to 1024 characters)."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=12, max_length=1024)


class RoleIn(BaseModel):
    """A new role: cashier, manager, auditor or admin."""

    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1, max_length=16)


@router.get("/staff/accounts")
def list_accounts(request: Request, _who: Admin) -> list[dict[str, Any]]:
    """Every staff account (id, role, disabled, has_totp), by id."""
    return [asdict(v) for v in security_of(request).staff_admin.accounts()]


@router.post("/staff/accounts/{staff_id}/disable")
def disable_account(staff_id: StaffIdPath, request: Request, who: Admin) -> dict[str, Any]:
    """Disable the account and revoke its tokens at once (404 unknown; 409 your own
    account or the last enabled admin; a disabled account answers ``changed`` false)."""
    return asdict(security_of(request).staff_admin.disable(
        actor=f"staff:{who.id}", staff_id=staff_id))


@router.post("/staff/accounts/{staff_id}/enable")
def enable_account(staff_id: StaffIdPath, request: Request, who: Admin) -> dict[str, Any]:
    """Enable a disabled account (404 unknown)."""
    return asdict(security_of(request).staff_admin.enable(
        actor=f"staff:{who.id}", staff_id=staff_id))


@router.post("/staff/accounts/{staff_id}/password")
def reset_password(staff_id: StaffIdPath, body: PasswordIn, request: Request,
                   who: Admin) -> dict[str, Any]:
    """Set a new password and revoke the member's tokens (404 unknown)."""
    return asdict(security_of(request).staff_admin.reset_password(
        actor=f"staff:{who.id}", staff_id=staff_id, password=body.password))


@router.post("/staff/accounts/{staff_id}/totp")
def reset_totp(staff_id: StaffIdPath, request: Request, who: Admin) -> dict[str, Any]:
    """Issue a new TOTP secret (in this answer only) and revoke the member's tokens
    (404 unknown; 409 for a cashier or auditor, who sign in without a code)."""
    return asdict(security_of(request).staff_admin.reset_totp(
        actor=f"staff:{who.id}", staff_id=staff_id))


@router.put("/staff/accounts/{staff_id}/role")
def change_role(staff_id: StaffIdPath, body: RoleIn, request: Request,
                who: Admin) -> dict[str, Any]:
    """Give the account another role and revoke its tokens; a new TOTP secret is in this
    answer when manager or admin needs one (422 unknown role; 404 unknown id; 409 your
    own account or the last enabled admin)."""
    return asdict(security_of(request).staff_admin.change_role(
        actor=f"staff:{who.id}", staff_id=staff_id, role=body.role))


@router.get("/audit/entries")
def entries(request: Request, _who: Auditor,
            after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            subject: Annotated[str | None, Query(max_length=100)] = None
            ) -> list[dict[str, Any]]:
    """Audit entries after ``after_seq``, oldest first (auditors only)."""
    return [asdict(e) for e in security_of(request).audit.entries(
        after_seq=after_seq, limit=limit, subject=subject)]


@router.get("/audit/verify")
def verify(request: Request, _who: Auditor) -> dict[str, Any]:
    """Check the whole hash chain; the first bad entry when it was tampered with."""
    return asdict(security_of(request).audit.verify())
