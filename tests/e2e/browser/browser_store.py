"""A real store served over HTTP for the browser tests, and the data they start from.

:class:`LiveServer` runs uvicorn in a background thread on 127.0.0.1 (a free port)
around ``create_app(container)``; :class:`LiveStore` seeds data through the
container's services and the JSON API (an ``httpx`` client signed and authenticated
like a real device or staff client, see ``storefront.security.client``).
"""

from __future__ import annotations

import itertools
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pyotp
import uvicorn
from card_refused import CardRefused
from fastapi import FastAPI

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import Container
from storefront.catalog import make_item

PALM_SEED = 4242
CONSENT_VERSION = "2026-11"
HEBREW_MILK = "חלב תנובה 3% 1 ליטר"
PRODUCTS: dict[str, tuple[str, int, bool]] = {  # code: (name, price in minor units, 18+)
    "MILK-3": (HEBREW_MILK, 695, False),
    "WATER": ("Sparkling water 1l", 95, False),
    "COFFEE.250": ("Ground coffee 250g", 425, False),
    "WINE-75": ("Red wine 75cl", 899, True),
}
TILL = "till-1"


@cache
def palm_png(palm: int, capture: int) -> bytes:
    """One synthetic capture of ``palm`` as PNG bytes (same seed as tests/e2e/conftest.py)."""
    return bytes(encode_png(SyntheticPalms(PALM_SEED).capture(palm, capture)))


class LiveServer:
    """uvicorn serving ``app`` from a background thread; ``url`` is its base URL."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="live-server", daemon=True)

    def start(self, timeout_s: float = 15.0) -> None:
        """Start serving; returns once ``/health`` answers 200 (RuntimeError after
        ``timeout_s`` seconds or if the server thread dies)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the live server stopped while starting")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the live server did not answer /health within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to finish (open requests complete) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError(f"the live server did not stop within {timeout_s} s")


@dataclass(frozen=True)
class Staff:
    """A staff account: id, password, role and TOTP secret (managers and admins)."""

    id: str
    password: str
    role: str
    totp_secret: str | None = None

    def code(self) -> str:
        """The current 6-digit TOTP code; raises ValueError for a role without TOTP."""
        if self.totp_secret is None:
            raise ValueError(f"{self.id} ({self.role}) has no TOTP secret")
        return str(pyotp.TOTP(self.totp_secret).now())


@dataclass(frozen=True)
class Shopper:
    """A shopper account that signs in with e-mail and password."""

    id: str
    email: str
    password: str
    display_name: str
    payment_token: str


@dataclass
class LiveStore:
    """The served store: base ``url``, its ``container``, ``processor`` and an ``api``
    client (device-signed, staff-authenticated) for seeding through the JSON API."""

    url: str
    container: Container
    processor: CardRefused
    api: httpx.Client
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _open_tills: set[str] = field(default_factory=set)

    def next_serial(self) -> int:
        """A number unique in this test session (ids, e-mails, palm numbers)."""
        return next(self._serial)

    def add_products(self) -> None:
        """Put :data:`PRODUCTS` in the catalogue (GBP)."""
        currency = self.container.settings.currency
        self.container.catalogue.upsert([
            make_item(code, name, price, currency, age_restricted=adult)
            for code, (name, price, adult) in PRODUCTS.items()])

    def add_staff(self, role: str, prefix: str | None = None) -> Staff:
        """A new staff account of ``role`` (cashier, manager, auditor, admin)."""
        staff_id = f"{prefix or role}-{self.next_serial()}"
        password = f"pw-{secrets.token_urlsafe(12)}"
        made = self.container.security.staff.add(staff_id=staff_id, role=role,
                                                 password=password)
        return Staff(staff_id, password, role, made.totp_secret)

    def open_till(self, staff: Staff, till_id: str = TILL, float_minor: int = 5000) -> str:
        """Open ``till_id``'s cash drawer once per test session; returns the till id."""
        if till_id not in self._open_tills:
            self.container.till.open_drawer(till_id=till_id, staff_id=staff.id,
                                            float_minor=float_minor)
            self._open_tills.add(till_id)
        return till_id

    def add_shopper(self, display_name: str = "Noa Levi") -> Shopper:
        """A new shopper signed up through ``POST /auth/signup``."""
        n = self.next_serial()
        shopper = {"email": f"shopper{n}@example.org", "password": f"pass-{n}-horse-battery",
                   "display_name": display_name, "payment_token": f"tok_browser_{n}"}
        r = self.api.post("/auth/signup", json=shopper)
        assert r.status_code == 201, r.text
        return Shopper(r.json()["shopper_id"], shopper["email"], shopper["password"],
                       display_name, shopper["payment_token"])

    def enrol_palm(self, shopper: Shopper, captures: int = 4) -> int:
        """Enrol a palm of its own for ``shopper`` through the staff API route, with the
        enrolment code the signed-in shopper made (``POST /me/enrolment-codes``) and the
        consent given at the staff point; returns the synthetic palm number."""
        palm = self.next_serial()
        files = [("images", (f"p{palm}_c{c}.png", palm_png(palm, c), "image/png"))
                 for c in range(captures)]
        made = self.api.post("/me/enrolment-codes", headers={
            "Authorization": f"Bearer {self.shopper_token(shopper)}"})
        assert made.status_code == 201, made.text
        r = self.api.post(f"/shoppers/{shopper.id}/palms", files=files,
                          data={"consent_text_version": CONSENT_VERSION,
                                "enrolment_code": made.json()["code"]})
        assert r.status_code == 201, r.text
        assert r.json()["templates"] >= 1, r.json()
        return palm

    def shop(self, shopper_id: str, items: dict[str, int]) -> str:
        """Open a session for ``shopper_id`` and pick ``items``; returns the session id."""
        session_id = self.container.gates.open_session(shopper_id=shopper_id,
                                                       entry_method="palm")
        start = datetime.now(UTC) - timedelta(seconds=30)
        cart = f"cart-{self.next_serial()}"
        for seq, (code, qty) in enumerate(items.items()):
            r = self.api.post(f"/sessions/{session_id}/events", json={
                "kind": "picked", "product_code": code, "quantity": qty,
                "device_id": cart, "device_seq": seq,
                "sensor_time": (start + timedelta(seconds=seq)).isoformat()})
            assert r.status_code == 201, r.text
        return str(session_id)

    def exit(self, session_id: str) -> dict[str, Any]:
        """Walk out through the gate (signed ``POST /sessions/{id}/exit``)."""
        r = self.api.post(f"/sessions/{session_id}/exit")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def settled_trip(self, shopper: Shopper, items: dict[str, int]) -> str:
        """A trip charged to ``shopper``'s card; returns the receipt id."""
        outcome = self.exit(self.shop(shopper.id, items))
        assert outcome["status"] == "paid" and outcome["receipt_id"], outcome
        return str(outcome["receipt_id"])

    def staffed_session(self, items: dict[str, int]) -> str:
        """A session whose exit went to the staffed checkout because the issuer refused
        the card on file; returns the session id."""
        shopper = self.add_shopper("Dana")
        session_id = self.shop(shopper.id, items)
        self.processor.refused.add(shopper.payment_token)
        outcome = self.exit(session_id)
        assert outcome["status"] == "staffed", outcome
        return session_id

    def staffed_cart(self, session_id: str) -> dict[str, Any]:
        """What the staffed checkout shows for ``session_id`` (``GET /staff/sessions``)."""
        r = self.api.get(f"/staff/sessions/{session_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def shopper_token(self, shopper: Shopper) -> str:
        """A fresh session token of ``shopper`` (``POST /auth/login``)."""
        r = self.api.post("/auth/login", json={"email": shopper.email,
                                               "password": shopper.password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def palms_of(self, shopper: Shopper) -> list[dict[str, Any]]:
        """``GET /me/palms`` as the shopper."""
        r = self.api.get("/me/palms", headers={
            "Authorization": f"Bearer {self.shopper_token(shopper)}"})
        assert r.status_code == 200, r.text
        palms: list[dict[str, Any]] = r.json()
        return palms
