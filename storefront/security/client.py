"""Client-side credentials for a store built in-process (tests, benchmarks, the fuzzer).

:class:`LocalAccess` creates staff accounts and devices on first use through the
container's services, logs staff in (with a TOTP code when the role needs one) and is
an ``httpx.Auth`` that does what a real client does: device routes are signed with the
device's key (:func:`storefront.security.devices_http.sign_headers`), every other
request carries the bearer token of the staff member named by the body's ``staff_id``
(default ``roles_default_id``). Staff accounts are managers unless ``roles`` says
otherwise; ``/products`` is done by an admin and ``/audit`` by an auditor.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Generator
from typing import Any

import httpx
import pyotp

from storefront.security.devices_http import sign_headers
from storefront.security.service import Security

_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GATE_ROUTES = (re.compile(r"^/gates/entry$"), re.compile(r"^/gates/entry/code$"),
                re.compile(r"^/sessions/[^/]+/exit$"))
_CART_ROUTE = re.compile(r"^/sessions/[^/]+/events$")


class LocalAccess(httpx.Auth):
    """Signs device requests and authenticates staff for one in-process store."""

    requires_request_body = True

    def __init__(self, security: Security, *, store_id: str,
                 roles: dict[str, str] | None = None, gate_id: str = "gate-1",
                 default_staff: str | None = None) -> None:
        self._security = security
        self._store_id = store_id
        self.roles = {"ada": "admin", "aud": "auditor", **(roles or {})}
        self.gate_id = gate_id
        # Unique per client: a second client on the same database (a restart) cannot
        # log in as an account whose password only the first one knew.
        self.default_staff = default_staff or f"mgr-{secrets.token_hex(4)}"
        self._tokens: dict[str, str] = {}
        self._keys: dict[str, bytes] = {}

    def token(self, staff_id: str) -> str:
        """A bearer token of ``staff_id`` (account created on first use)."""
        if staff_id not in self._tokens:
            password = secrets.token_urlsafe(16)
            made = self._security.staff.add(staff_id=staff_id, password=password,
                                             role=self.roles.get(staff_id, "manager"))
            code = pyotp.TOTP(made.totp_secret).now() if made.totp_secret else None
            self._tokens[staff_id] = self._security.staff.login(
                staff_id=staff_id, password=password, totp=code).token
        return self._tokens[staff_id]

    def device_key(self, device_id: str, kind: str) -> bytes:
        """The key of ``device_id`` (registered as ``kind`` on first use)."""
        if device_id not in self._keys:
            known = self._security.registry.lookup(device_id)  # e.g. after a restart
            self._keys[device_id] = known.key if known is not None else \
                self._security.registry.add(store_id=self._store_id, device_id=device_id,
                                            kind=kind)
        return self._keys[device_id]

    def signed(self, request: httpx.Request, device_id: str, kind: str) -> None:
        """Add the device signature headers to ``request``."""
        request.headers.update(sign_headers(
            self.device_key(device_id, kind), device_id=device_id, method=request.method,
            path=request.url.path, query=request.url.query.decode("latin-1"),
            body=request.content, ts_ms=int(time.time() * 1000)))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                               None]:
        """Sign or add a bearer token, then send."""
        path = request.url.path
        if request.method == "POST" and any(r.match(path) for r in _GATE_ROUTES):
            self.signed(request, self.gate_id, "gate")
        elif request.method == "POST" and _CART_ROUTE.match(path):
            device = _body_field(request, "device_id")
            self.signed(request, device if device and _ID.fullmatch(device) else "cart-1",
                        "cart")
        elif "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {self.token(self._staff_for(request))}"
        yield request

    def _staff_for(self, request: httpx.Request) -> str:
        path = request.url.path
        if path.startswith("/products"):
            return "ada"
        if path.startswith("/audit"):
            return "aud"
        stated = _body_field(request, "staff_id")
        return stated if stated and _ID.fullmatch(stated) else self.default_staff


def _body_field(request: httpx.Request, name: str) -> str | None:
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        body: Any = json.loads(request.content)
    except ValueError:
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def authenticated(client: httpx.Client, security: Security, store_id: str,
                  **options: Any) -> Any:
    """``client`` with a :class:`LocalAccess` as its auth (returned for chaining)."""
    client.auth = LocalAccess(security, store_id=store_id, **options)
    return client
