"""Mounting the pages on the FastAPI app, and answering page errors with pages."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from storefront.web import login as login_pages
from storefront.web.auth import LoginRequired, signed_in_user
from storefront.web.render import STATIC_DIR, render

WEB_PREFIXES = ("/console", "/portal", "/kiosk")


def is_page_request(request: Request) -> bool:
    """True for a request to one of the pages (not the JSON API)."""
    path = request.url.path
    return any(path == p or path.startswith(p + "/") for p in WEB_PREFIXES)


def error_page(request: Request, exc: Exception, status: int, code: str,
               reason: str) -> Response | None:
    """The page answering an error raised while serving a page; None for API requests.

    A page needing sign-in redirects to its login page; any other error is a page with
    the status, the reason and a way back.
    """
    if not is_page_request(request):
        return None
    if isinstance(exc, LoginRequired):
        return RedirectResponse(exc.login_url, status_code=303)
    area = next(p for p in WEB_PREFIXES if request.url.path.startswith(p))
    user = signed_in_user(request)
    layout = {"/console": "console/layout.html", "/portal": "portal/layout.html",
              "/kiosk": "kiosk/layout.html"}.get(
        area, "base.html")
    return render(request, "error.html", {"status": status, "code": code, "reason": reason,
                                          "home": area, "layout": layout},
                  user=user, status_code=status)


def install_web(app: FastAPI) -> None:
    """Add the pages, their static files and the page error renderer to ``app``."""
    from storefront.web import console, kiosk, portal, signup  # the page routers

    app.state.error_renderer = error_page
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(login_pages.router)
    for module in (console, portal, kiosk, signup):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        """A start page linking to the three areas."""
        return render(request, "index.html")
