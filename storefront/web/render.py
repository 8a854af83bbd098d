"""Rendering pages: the Jinja2 environment, its filters, flash messages and redirects.

Templates live in ``storefront/web/templates`` and are autoescaped. Every page gets
``flash`` (the message of the previous action, if any), ``csrf`` (the signed-in
user's form token, or "") and ``user`` (StaffUser, ShopperUser or None).

Flash messages travel in a short-lived cookie (HttpOnly, SameSite=Strict, 60 s) set by
:func:`redirect` and removed when the next page shows them (Post/Redirect/Get).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from storefront.clock import as_utc
from storefront.money import format_minor
from storefront.web.auth import ShopperUser, StaffUser

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
FLASH_COOKIE = "sf_flash"
FlashKind = Literal["ok", "error"]

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def money(amount_minor: int | None, currency: str = "") -> str:
    """Minor units for people (``695, "ILS"`` -> ``6.95 ILS``); an em dash for None."""
    if amount_minor is None:
        return "\u2014"
    return format_minor(int(amount_minor), currency).strip()


def when(value: datetime | str | None) -> str:
    """A UTC time as ``2026-11-30 14:05 UTC``; an em dash for None."""
    if value is None or value == "":
        return "\u2014"
    return as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["money"] = money
templates.env.filters["when"] = when


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    if (not isinstance(data, dict) or data.get("kind") not in ("ok", "error")
            or not isinstance(data.get("text"), str)):
        return None
    return {"kind": data["kind"], "text": data["text"][:500]}


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           user: StaffUser | ShopperUser | None = None, status_code: int = 200) -> HTMLResponse:
    """Render ``template`` with ``context`` plus ``flash``, ``csrf`` and ``user``."""
    values: dict[str, Any] = {"user": user, "csrf": user.csrf if user else "",
                              "flash": _read_flash(request), **(context or {})}
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def redirect(request: Request, url: str, *, message: str | None = None,
             kind: FlashKind = "ok") -> RedirectResponse:
    """A 303 redirect to ``url`` (Post/Redirect/Get), carrying an optional flash message."""
    response = RedirectResponse(url, status_code=303)
    if message:
        payload = json.dumps({"kind": kind, "text": message[:500]})
        response.set_cookie(FLASH_COOKIE, base64.urlsafe_b64encode(payload.encode()).decode(),
                            max_age=60, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response
