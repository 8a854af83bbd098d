"""Reading what staff typed into console forms: one helper per kind of field.

Every helper raises ``InvalidInput`` with a sentence naming the field, which the
console's form handlers show as an error message; nothing is coerced silently.
Amounts are typed in major units (``12.50``) and returned in minor units.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from cart.errors import CartError
from storefront.errors import InvalidInput, StorefrontError
from storefront.money import format_minor, parse_major_to_minor
from storefront.web.auth import form_text
from storefront.web.render import redirect

if TYPE_CHECKING:
    from storefront.bootstrap import Container

ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_AMOUNT_MINOR = 10**9
_AMOUNT_RE = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")  # ASCII digits only
_COUNT_RE = re.compile(r"^[0-9]{1,7}$")


def required_text(form: FormData, name: str, label: str, limit: int = 300) -> str:
    """A required free-text field (a reason). Raises InvalidInput when empty, too long
    or holding control characters."""
    value = form.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise InvalidInput(f"{label} is required")
    if len(value) > limit:
        raise InvalidInput(f"{label} is at most {limit} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"{label} may not contain control characters")
    return value


def ident(form: FormData, name: str, label: str, *, required: bool = True) -> str | None:
    """An id field (till, product code): 1-64 of letters, digits, ``.``, ``_``, ``-``.

    Returns None for an empty optional field. Raises InvalidInput.
    """
    value = form_text(form, name, 200)
    if not value and not required:
        return None
    if not ID_RE.fullmatch(value):
        raise InvalidInput(f"{label} must be 1-64 letters, digits, '.', '_' or '-'"
                           + ("" if value else " (it is empty)"))
    return value


def check_id(value: str, label: str) -> str:
    """``value`` when it is a valid id (see :func:`ident`); raises InvalidInput."""
    if not ID_RE.fullmatch(value):
        raise InvalidInput(f"{label} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def amount_minor(form: FormData, name: str, label: str, *, allow_zero: bool) -> int:
    """An amount typed in major units (``12.50``, ``12.5``, ``12``) as minor units.

    Raises InvalidInput for anything else (``12,5x``, ``-1``, ``1e3``, more than two
    decimals) or an amount outside 0 (or 0.01) to 10,000,000.00.
    """
    raw = form_text(form, name, 40)
    if not _AMOUNT_RE.fullmatch(raw):
        raise InvalidInput(f"{label} must be an amount like 12.50 (digits, at most two "
                           f"decimals), not {raw!r}")
    minor = parse_major_to_minor(raw)
    low = 0 if allow_zero else 1
    if not low <= minor <= MAX_AMOUNT_MINOR:
        raise InvalidInput(f"{label} must be from {major(low)} to {major(MAX_AMOUNT_MINOR)}")
    return minor


def count(form: FormData, name: str, label: str, *, low: int, high: int) -> int:
    """A whole number typed by staff (quantity, units or grams) within [low, high].

    Raises InvalidInput for signs, decimals, letters or a number out of range.
    """
    raw = form_text(form, name, 40)
    if not _COUNT_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"{label} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def major(amount_minor: int) -> str:
    """Minor units as a major-unit number without currency (``1250`` -> ``12.50``)."""
    return format_minor(amount_minor, "").strip()


def new_key() -> str:
    """A fresh idempotency key for one rendered form (URL-safe, 24 characters)."""
    return secrets.token_urlsafe(18)


ACTION_ERRORS = (StorefrontError, CartError)
"""Errors a form handler answers with an error message on the page it came from."""


def reason_of(exc: Exception) -> str:
    """The sentence to show for a service error."""
    return str(getattr(exc, "reason", None) or exc)


def failed(request: Request, back: str, exc: Exception) -> Response:
    """Back to ``back`` with the error's reason as the flash message (nothing changed)."""
    return redirect(request, back, message=reason_of(exc), kind="error")


def container_of(request: Request) -> Container:
    """The app's service container."""
    container: Container = request.app.state.container
    return container


async def posted_form(request: Request) -> FormData:
    """The posted form (parsed once per request; the *Action dependency checked it)."""
    return await request.form()


Posted = Annotated[FormData, Depends(posted_form)]
