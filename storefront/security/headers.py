"""Security headers on every response (pure ASGI middleware).

* ``X-Content-Type-Options: nosniff``; ``X-Frame-Options: DENY`` and CSP
  ``frame-ancestors 'none'`` (no framing: clickjacking);
* ``Content-Security-Policy``: nothing may load except inline styles (HTML receipts);
  the pages (``/``, ``/console``, ``/portal``, ``/kiosk``) may load this site's own
  stylesheet and script and post forms to this site only (no inline script);
  the interactive docs (``/docs``, ``/redoc``) keep only the framing rule, as they load
  their scripts from a CDN;
* ``Referrer-Policy: no-referrer`` (``same-origin`` on the pages: see ``_headers``);
* ``Strict-Transport-Security`` (RFC 6797) only on HTTPS requests: the ASGI scheme,
  which uvicorn sets from ``X-Forwarded-Proto`` behind a trusted proxy
  (``--proxy-headers --forwarded-allow-ips``);
* ``Cache-Control: no-store`` on every response except the catalogue, health and
  docs: the rest may carry personal data (sessions, receipts, shoppers, audit).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STRICT_CSP: Final = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                     "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
DOCS_CSP: Final = "frame-ancestors 'none'"
PAGE_CSP: Final = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_PAGES: Final = ("/console", "/portal", "/kiosk", "/static/")
_DOCS: Final = ("/docs", "/redoc", "/openapi.json")
_CACHEABLE: Final = ("/health", "/products/", "/static/", *_DOCS)


class SecurityHeadersMiddleware:
    """Adds the headers above; ``hsts_max_age_s`` is the HSTS max-age, seconds."""

    def __init__(self, app: ASGIApp, *, hsts_max_age_s: int = 31_536_000) -> None:
        self.app = app
        self._hsts = f"max-age={hsts_max_age_s}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = self._headers(path, scope.get("scheme") == "https")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                headers: list[Any] = list(message.get("headers", []))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _headers(self, path: str, https: bool) -> list[tuple[bytes, bytes]]:
        page = path == "/" or path.startswith(_PAGES)
        csp = DOCS_CSP if path.startswith(_DOCS) else PAGE_CSP if page else STRICT_CSP
        # Pages: "same-origin", so that a browser posting one of our forms sends our
        # Origin (under "no-referrer" it sends "Origin: null", which the pages refuse as
        # it is also what a sandboxed frame of another site sends).
        referrer = b"same-origin" if page else b"no-referrer"
        out = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", referrer),
               (b"content-security-policy", csp.encode())]
        if not path.startswith(_CACHEABLE):
            out.append((b"cache-control", b"no-store"))
        if https:
            out.append((b"strict-transport-security", self._hsts))
        return out
