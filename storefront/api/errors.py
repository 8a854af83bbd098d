"""One table mapping service-layer errors to HTTP status codes, and the handler using it.

Every error answer is JSON ``{"error": <code>, "reason": <sentence>}``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from cart import errors as cart_errors
from identity import errors as identity_errors
from storefront import errors as sf_errors
from storefront.accounts import TooManyAttempts
from storefront.security import errors as sec_errors

STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (identity_errors.InvalidImageError, 422),
    (identity_errors.AcquisitionError, 422),
    (identity_errors.EnrolmentError, 422),
    (identity_errors.TemplateFormatError, 500),
    (identity_errors.TemplateDecryptionError, 500),
    (cart_errors.SessionNotFound, 404),
    (cart_errors.SessionClosed, 409),
    (cart_errors.DuplicateDeviceEvent, 409),
    (cart_errors.ConcurrencyConflict, 503),  # transient: the client retries
    (cart_errors.InvalidCommand, 422),
    (sec_errors.AuthenticationRequired, 401),
    (sec_errors.PermissionDenied, 403),
    (sf_errors.NotFound, 404),
    (sf_errors.UnknownProduct, 422),
    (sf_errors.InvalidInput, 422),
    (sf_errors.Conflict, 409),
    (sf_errors.Gone, 410),
    (sf_errors.EntryRefused, 403),
    (sf_errors.PaymentError, 502),
    (sf_errors.KeyUnavailable, 503),  # server-side key problem, not the client's input
    (TooManyAttempts, 429),
)

_HANDLED = (identity_errors.IdentityError, cart_errors.CartError, sf_errors.StorefrontError)


def status_for(exc: Exception) -> int:
    """The HTTP status of a service error (500 for one missing from the table)."""
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def error_code(exc: Exception) -> str:
    """The machine-readable code of a service error."""
    return str(getattr(exc, "code", type(exc).__name__))


def describe(exc: Exception) -> tuple[int, str, str, dict[str, str] | None]:
    """Status, code, reason and extra headers of any error the handlers answer."""
    if isinstance(exc, RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                 for e in exc.errors()]
        return 422, "invalid_request", "; ".join(parts) or str(exc), None
    if isinstance(exc, HTTPException):
        return (exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"),
                str(exc.detail), getattr(exc, "headers", None))
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="storefront"'}
    if isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return status, error_code(exc), str(getattr(exc, "reason", str(exc))), headers


ErrorRenderer = Callable[[Request, Exception, int, str, str], Response | None]


async def _handle(request: Request, exc: Exception) -> Response:
    status, code, reason, headers = describe(exc)
    renderer: ErrorRenderer | None = getattr(request.app.state, "error_renderer", None)
    if renderer is not None:
        page = renderer(request, exc, status, code, reason)
        if page is not None:
            return page
    return JSONResponse({"error": code, "reason": reason}, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
               413: "too_large", 429: "rate_limited"}


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on ``app`` for every service error family.

    ``app.state.error_renderer`` (set by ``storefront.web``) may answer an error with a
    page instead of JSON; it returns None for requests that are not for a page.
    """
    for family in (*_HANDLED, RequestValidationError, HTTPException):
        app.add_exception_handler(family, _handle)
