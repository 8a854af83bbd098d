"""Shopper sign-up, login, logout and TOTP enrolment (bearer session tokens)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from storefront.accounts import AuthenticationFailed, TooManyAttempts
from storefront.api.deps import ContainerDep
from storefront.api.schemas import Text
from storefront.privacy.wiring import Privacy, build_privacy

router = APIRouter(prefix="/auth", tags=["auth"])
_bearer = HTTPBearer(auto_error=False, description="session token from POST /auth/login")
_build_lock = threading.Lock()


def get_privacy(request: Request, c: ContainerDep) -> Privacy:
    """The app's privacy services, built once (tests may set ``app.state.privacy`` first)."""
    with _build_lock:
        privacy: Privacy | None = getattr(request.app.state, "privacy", None)
        if privacy is None:
            privacy = build_privacy(c)
            request.app.state.privacy = privacy
        return privacy


PrivacyDep = Annotated[Privacy, Depends(get_privacy)]


@contextmanager
def auth_errors() -> Iterator[None]:
    """Answer AuthenticationFailed with 401 and TooManyAttempts with 429 (Retry-After)."""
    try:
        yield
    except AuthenticationFailed as exc:
        raise HTTPException(401, exc.reason, headers={"WWW-Authenticate": "Bearer"}) from exc
    except TooManyAttempts as exc:
        raise HTTPException(429, exc.reason,
                            headers={"Retry-After": str(exc.retry_after_s)}) from exc


def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                        Depends(_bearer)]) -> str:
    """The bearer token of the request; 401 when there is none."""
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "a bearer session token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    return credentials.credentials


def current_shopper(token: Annotated[str, Depends(bearer_token)], p: PrivacyDep) -> str:
    """The shopper id of a valid session token; 401 otherwise."""
    with auth_errors():
        return p.accounts.authenticate(token)


ShopperDep = Annotated[str, Depends(current_shopper)]


class SignUpIn(BaseModel):
    """A new account: login e-mail, password (10-256 chars), name, processor payment token."""

    model_config = ConfigDict(extra="forbid")
    email: Text = Field(min_length=3, max_length=254)
    password: str = Field(min_length=10, max_length=256)
    display_name: Text = Field(min_length=1, max_length=200)
    payment_token: Text = Field(min_length=1, max_length=200)


class LoginIn(BaseModel):
    """Credentials; ``totp_code`` (6 digits) when the account has TOTP on."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)
    totp_code: str | None = Field(default=None, pattern=r"^\d{6}$")


class TokenOut(BaseModel):
    """A session token (shown once); send it as ``Authorization: Bearer <token>``."""

    token: str
    token_type: str = "bearer"
    shopper_id: str
    expires_at: datetime


class TotpEnrolOut(BaseModel):
    """The ``otpauth://`` URI to scan; TOTP is on after ``POST /auth/totp/verify``."""

    provisioning_uri: str


class TotpCodeIn(BaseModel):
    """One 6-digit TOTP code."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^\d{6}$")


@router.post("/signup", status_code=201,
             responses={409: {"description": "the e-mail has an account"},
                        429: {"description": "too many taken addresses tried (Retry-After)"}})
def sign_up(body: SignUpIn, request: Request, p: PrivacyDep) -> dict[str, str]:
    """Create a shopper account with login credentials (409 for a registered e-mail,
    429 once the client address has had 5 of those in 15 minutes)."""
    with auth_errors():
        shopper_id = p.accounts.sign_up(
            email=body.email, password=body.password, display_name=body.display_name,
            payment_token=body.payment_token,
            client_ip=request.client.host if request.client else "unknown")
    return {"shopper_id": shopper_id}


@router.post("/login", response_model=TokenOut,
             responses={401: {"description": "wrong credentials"},
                        429: {"description": "too many failed logins (Retry-After)"}})
def login(body: LoginIn, request: Request, p: PrivacyDep) -> TokenOut:
    """Exchange credentials for an expiring session token (rate-limited; 401 / 429)."""
    ip = request.client.host if request.client else "unknown"
    with auth_errors():  # 401 / 429 with WWW-Authenticate / Retry-After (api/errors.py)
        issued = p.accounts.login(email=body.email, password=body.password, client_ip=ip,
                                  totp_code=body.totp_code)
    return TokenOut(token=issued.token, shopper_id=issued.shopper_id,
                    expires_at=issued.expires_at)


@router.post("/logout", status_code=204)
def logout(token: Annotated[str, Depends(bearer_token)], p: PrivacyDep) -> Response:
    """Revoke the session token."""
    p.accounts.logout(token)
    return Response(status_code=204)


@router.post("/totp/enrol", response_model=TotpEnrolOut)
def totp_enrol(shopper: ShopperDep, p: PrivacyDep) -> TotpEnrolOut:
    """Start TOTP enrolment (409 when already on)."""
    with auth_errors():
        return TotpEnrolOut(provisioning_uri=p.accounts.totp_enrol(shopper))


@router.post("/totp/verify")
def totp_verify(body: TotpCodeIn, shopper: ShopperDep,
                token: Annotated[str, Depends(bearer_token)], p: PrivacyDep) -> dict[str, Any]:
    """Confirm TOTP enrolment with one code; logins then need a code. Every other session
    of the shopper ends (``sessions_ended``); this request's session stays."""
    with auth_errors():
        ended = p.accounts.totp_verify(shopper, body.code, keep_token=token)
    return {"totp_enabled": True, "sessions_ended": ended}
