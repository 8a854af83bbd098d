"""More data and checks for the browser tests of the console's and the portal's tasks.

* :func:`flagged_staffed_session`: a session at the staffed checkout with a flagged
  (low-confidence) pick for the review queue;
* :func:`shopper_in_store`: a shopper still shopping, with a flagged put-back;
* :func:`enter_by_code`: a gate redeeming a one-time entry code (signed like a gate);
* :func:`check_posted_page`: the accessibility checks and screenshots at 100% and 200%
  zoom for a page that answers a form post (which cannot be opened again by its URL,
  as ``browser_pages.zoomed`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from a11y import focus_order, problems
from browser_pages import VIEWPORT, ZOOM_200, console_errors, screenshot
from browser_store import LiveStore, Shopper
from playwright.sync_api import Page, expect

from storefront.security.client import LocalAccess

ItemEvent = tuple[str, str, int, float]
"""An item event to send: (kind ``picked``/``put_back``, product code, quantity, confidence)."""


@dataclass(frozen=True)
class Flagged:
    """A session with one flagged event, named by its device key (``device_id#seq``)."""

    session_id: str
    device_id: str
    device_seq: int

    @property
    def form_name(self) -> str:
        """The accessible name of the review form that decides this flag."""
        return f"Decide flag {self.device_id}#{self.device_seq} of {self.session_id}"


def shop_events(store: LiveStore, shopper_id: str, events: list[ItemEvent]) -> tuple[str, str]:
    """Open a session for ``shopper_id`` (palm entry) and send ``events`` from one smart
    cart through ``POST /sessions/{id}/events``; returns (session id, cart device id)."""
    session_id = str(store.container.gates.open_session(shopper_id=shopper_id,
                                                        entry_method="palm"))
    cart = f"cart-{store.next_serial()}"
    start = datetime.now(UTC) - timedelta(seconds=30)
    for seq, (kind, code, quantity, confidence) in enumerate(events):
        r = store.api.post(f"/sessions/{session_id}/events", json={
            "kind": kind, "product_code": code, "quantity": quantity,
            "confidence": confidence, "device_id": cart, "device_seq": seq,
            "sensor_time": (start + timedelta(seconds=seq)).isoformat()})
        assert r.status_code == 201, r.text
    return session_id, cart


def flagged_staffed_session(store: LiveStore) -> Flagged:
    """A shopper picks a milk, and two waters that the cart saw with low confidence
    (flagged, left out of the lines); the flag sends the exit to the staffed checkout."""
    shopper = store.add_shopper("Tamar")
    session_id, cart = shop_events(store, shopper.id, [("picked", "MILK-3", 1, 1.0),
                                                       ("picked", "WATER", 2, 0.2)])
    outcome = store.exit(session_id)
    assert outcome["status"] == "staffed", outcome
    return Flagged(session_id, cart, 1)


def shopper_in_store(store: LiveStore, display_name: str) -> tuple[Shopper, Flagged]:
    """A shopper still in the store who picked a coffee and put back a water never
    picked (a flag that waits until the session reaches the staffed checkout)."""
    shopper = store.add_shopper(display_name)
    session_id, cart = shop_events(store, shopper.id, [("picked", "COFFEE.250", 1, 1.0),
                                                       ("put_back", "WATER", 1, 1.0)])
    return shopper, Flagged(session_id, cart, 1)


def enter_by_code(store: LiveStore, code: str) -> dict[str, Any]:
    """``POST /gates/entry/code`` signed with the gate's key (the API client signs only
    ``/gates/entry`` and exits by itself); returns the answer's JSON body."""
    access = store.api.auth
    assert isinstance(access, LocalAccess), access
    request = store.api.build_request("POST", "/gates/entry/code", json={"code": code})
    access.signed(request, access.gate_id, "gate")
    r = store.api.send(request, auth=None)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def check_posted_page(page: Page, name: str, tab_reaches: tuple[str, ...] = ()) -> None:
    """The checks of a page shown in answer to a form post, in place: labels and no
    inline styles, Tab reaches the controls named ``tab_reaches`` (a prefix is enough);
    then the same page laid out in a 640x400 CSS px window (a 1280x800 window at 200%
    zoom) needs no horizontal scrolling. Screenshots ``<name>-100`` and ``<name>-200``;
    the 1280x800 window is restored afterwards."""
    assert problems(page) == [], name
    names = [n for _, n in focus_order(page)]
    missing = [want for want in tab_reaches if not any(n.startswith(want) for n in names)]
    assert missing == [], (missing, names)
    screenshot(page, f"{name}-100")
    page.set_viewport_size(ZOOM_200)
    try:
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert problems(page) == [], name
        screenshot(page, f"{name}-200")
    finally:
        page.set_viewport_size(VIEWPORT)
    assert console_errors(page) == [], name
