"""Review decisions on goods sold by weight (priced per kg, cart quantities in grams), on
SQLite (the decision's transaction on PostgreSQL: ``test_review_queue.py``), through the
review queue, the JSON API and the staff console.

The break-test this answers: APPLE (3.00 GBP/kg) counted in units, not weighed, goes to
the staffed checkout with the issue that its line needs its weight in grams. Accepting a
flagged pick of 1 more APPLE used to write a correction to 2 (units) and the correction
cleared the issue, so the sale was priced for 2 g: 0.01 GBP for two apples. Now an
accept or reject that would set such a line from a count in units is refused (409, the
reason says to decide with ``correct`` and the weight in grams) and changes nothing;
``correct`` with the grams decides the flag and prices the line per kg. A decision that
changes no line is still made (the issue stays), and an accept of a weighed event still
corrects the line in grams. Money is integer minor units.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cart.events import WeighedItemAdded
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.review import ReviewQueue
from storefront.security.client import authenticated
from storefront.settings import Settings

T0 = datetime.now(UTC) - timedelta(minutes=30)
REFUSED = "APPLE is sold by weight: decide with correct and its weight in grams"
UNITS_ISSUE = ("weighed item APPLE was counted in units (1), not weighed: needs a "
               "correction with its weight in grams")


@dataclass
class Shop:
    c: Container
    api: TestClient
    app: Any
    shoppers: int = 0
    devices: dict[str, str] = field(default_factory=dict)

    def session(self, events: list[tuple[str, str, int, float]]) -> str:
        """An exited session of a new shopper with item events (kind, code, quantity or
        grams for ``weighed``, confidence) from the session's device (``d<n>``, as
        (device, sequence) is store-wide), sequence = index."""
        self.shoppers += 1
        shopper = self.c.shoppers.register(display_name="Noa",
                                           payment_token=f"tok_{'w' * self.shoppers}")
        sid = self.c.gates.open_session(shopper_id=shopper.id, entry_method="palm")
        device = self.devices[sid] = f"d{self.shoppers}"
        for seq, (kind, code, qty, confidence) in enumerate(events):
            at = T0 + timedelta(seconds=seq)
            if kind == "weighed":
                self.c.carts.record_device_event(sid, WeighedItemAdded(
                    code=code, grams=qty, device_id=device, device_seq=seq, sensor_time=at,
                    confidence=confidence))
            else:
                self.c.ingest.record(session_id=sid, kind=kind,  # type: ignore[arg-type]
                                     product_code=code, quantity=qty, device_id=device,
                                     device_seq=seq, sensor_time=at, confidence=confidence)
        self.c.checkout.exit(sid)
        assert self.c.read_model.get(sid).status == "staffed"
        return sid

    def decide(self, sid: str, seq: int, decision: str, **extra: Any) -> Any:
        return ReviewQueue.of(self.c).decide(session_id=sid, device_id=self.devices[sid],
                                             device_seq=seq,
                                             staff_id="ann", decision=decision,
                                             reason="checked at the till", **extra)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=None),
                  processor=SimulatedProcessor(seed=3, decline_rate=0.0))
    c.catalogue.upsert([make_item("APPLE", "Apples per kg", 300, "GBP", sold_by_weight=True),
                        make_item("TEA", "Tea", 150, "GBP")])
    app = create_app(c)
    with authenticated(TestClient(app), c.security, c.settings.store_id) as api:
        yield Shop(c, api, app)
    c.close()


def lines(c: Container, sid: str) -> dict[str, int]:
    return {str(line["code"]): int(line["quantity"])  # type: ignore[call-overload]
            for line in c.staffed.cart(sid).lines}


def assert_unchanged(c: Container, sid: str) -> None:
    """Nothing of a refused decision is kept: no correction, the flag open, no claim."""
    cart = c.staffed.cart(sid)
    assert cart.corrections == () and cart.claim is None
    assert all(f.resolved_by is None for f in cart.flags)
    assert cart.total_minor is None and cart.tenders == ()


def test_accepting_a_unit_pick_of_a_weighed_product_is_refused_and_grams_decide_it(
        shop: Shop) -> None:
    sid = shop.session([("picked", "APPLE", 1, 1.0), ("picked", "APPLE", 1, 0.1),
                        ("picked", "TEA", 1, 1.0)])
    cart = shop.c.staffed.cart(sid)
    assert cart.issues == (UNITS_ISSUE,) and cart.total_minor is None
    with pytest.raises(Conflict, match=REFUSED):
        shop.decide(sid, 1, "accept")
    assert_unchanged(shop.c, sid)
    assert shop.c.staffed.cart(sid).issues == (UNITS_ISSUE,)
    done = shop.decide(sid, 1, "correct", corrected_quantity=450)  # two apples: 450 g
    assert done.correction is not None
    assert (done.correction.quantity_before, done.correction.quantity_after) == (1, 450)
    cart = shop.c.staffed.cart(sid)
    assert cart.issues == () and lines(shop.c, sid) == {"APPLE": 450, "TEA": 1}
    assert cart.total_minor == 135 + 150  # 450 g at 3.00 GBP/kg, and the tea
    assert all(f.resolved_by == "ann" for f in cart.flags) and cart.claim is None


def test_rejecting_a_put_back_of_a_weighed_product_counted_in_units_is_refused(
        shop: Shop) -> None:
    sid = shop.session([("picked", "APPLE", 2, 1.0), ("put_back", "APPLE", 5, 1.0)])
    with pytest.raises(Conflict, match=REFUSED):
        shop.decide(sid, 1, "reject")
    cart = shop.c.staffed.cart(sid)
    assert cart.corrections == () and cart.claim is None
    assert all(f.resolved_by is None for f in cart.flags)
    done = shop.decide(sid, 1, "correct", corrected_quantity=320)
    assert done.correction is not None and lines(shop.c, sid) == {"APPLE": 320}
    assert shop.c.staffed.cart(sid).total_minor == 96  # 320 g at 3.00 GBP/kg


def test_a_decision_that_changes_no_line_is_made_and_the_weight_is_still_needed(
        shop: Shop) -> None:
    """Rejecting a low-confidence pick left out of the cart writes no correction: the
    flag is resolved, the line counted in units keeps its issue and blocks payment until
    staff give its weight."""
    sid = shop.session([("picked", "APPLE", 1, 1.0), ("picked", "APPLE", 1, 0.1)])
    done = shop.decide(sid, 1, "reject")
    assert done.correction is None and done.flags[0].resolved_by == "ann"
    cart = shop.c.staffed.cart(sid)
    assert cart.issues == (UNITS_ISSUE,) and cart.total_minor is None
    assert UNITS_ISSUE in cart.blockers
    shop.c.staffed.claim(session_id=sid, staff_id="ann")
    shop.c.staffed.correct(session_id=sid, staff_id="ann", product_code="APPLE",
                           quantity=210, reason="weighed at the till")
    cart = shop.c.staffed.cart(sid)
    assert cart.issues == () and cart.total_minor == 63  # 210 g at 3.00 GBP/kg


def test_a_unit_pick_on_a_weighed_line_is_refused_too(shop: Shop) -> None:
    """The line was weighed (grams); a flagged pick in units would add 1 g per apple."""
    sid = shop.session([("weighed", "APPLE", 500, 1.0), ("picked", "APPLE", 1, 0.1)])
    with pytest.raises(Conflict, match=REFUSED):
        shop.decide(sid, 1, "accept")
    assert shop.c.staffed.cart(sid).corrections == ()


def test_accepting_a_weighed_event_still_corrects_the_line_in_grams(shop: Shop) -> None:
    sid = shop.session([("weighed", "APPLE", 500, 1.0), ("weighed", "APPLE", 300, 0.1),
                        ("picked", "TEA", 1, 1.0)])
    assert lines(shop.c, sid) == {"APPLE": 500, "TEA": 1}
    done = shop.decide(sid, 1, "accept")
    assert done.correction is not None
    assert (done.correction.quantity_before, done.correction.quantity_after) == (500, 800)
    cart = shop.c.staffed.cart(sid)
    assert cart.issues == () and cart.total_minor == 240 + 150  # 800 g, and the tea


def test_the_api_answers_409_with_the_reason_and_correct_with_grams_decides(
        shop: Shop) -> None:
    sid = shop.session([("picked", "APPLE", 1, 1.0), ("picked", "APPLE", 1, 0.1)])
    url = f"/staff/sessions/{sid}/flags/resolve"
    body = {"staff_id": "ann", "device_id": shop.devices[sid], "device_seq": 1,
            "note": "seen on camera", "decision": "accept"}
    r = shop.api.post(url, json=body)
    assert r.status_code == 409 and REFUSED in r.json()["reason"], r.text
    assert_unchanged(shop.c, sid)
    r = shop.api.post(url, json=body | {"decision": "correct", "corrected_quantity": 400})
    assert r.status_code == 200, r.text
    assert r.json()["correction"]["quantity_after"] == 400
    assert r.json()["cart"]["issues"] == [] and r.json()["cart"]["total_minor"] == 120
    # A reject of the pick left out changes no line: made, and the weight is still needed.
    other = shop.session([("picked", "APPLE", 1, 1.0), ("picked", "APPLE", 1, 0.1)])
    r = shop.api.post(f"/staff/sessions/{other}/flags/resolve",
                      json=body | {"decision": "reject", "device_id": shop.devices[other]})
    assert r.status_code == 200 and r.json()["correction"] is None, r.text
    assert r.json()["cart"]["issues"] == [UNITS_ISSUE]


def test_the_console_form_shows_the_refusal_and_changes_nothing(shop: Shop) -> None:
    sid = shop.session([("picked", "APPLE", 1, 1.0), ("picked", "APPLE", 1, 0.1)])
    staff_id, password = f"manager-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    made = shop.c.security.staff.add(staff_id=staff_id, role="manager", password=password)
    console = TestClient(shop.app, follow_redirects=False)
    login = {"staff_id": staff_id, "password": password, "next": "/console"}
    if made.totp_secret:
        import pyotp
        login["totp"] = pyotp.TOTP(made.totp_secret).now()
    assert console.post("/console/login", data=login).status_code == 303
    page = console.get("/console/review")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    form = {"csrf": found.group(1), "session_id": sid, "device_id": shop.devices[sid],
            "device_seq": "1",
            "decision": "accept", "reason": "seen on camera", "back": "/console/review"}
    r = console.post("/console/review/decide", data=form)
    assert r.status_code == 303, r.text
    shown = console.get(r.headers["location"])
    assert REFUSED in shown.text
    assert_unchanged(shop.c, sid)
    r = console.post("/console/review/decide",
                     data=form | {"decision": "correct", "corrected_quantity": "450"})
    assert r.status_code == 303, r.text
    assert "APPLE 1 -&gt; 450" in console.get(r.headers["location"]).text
    assert shop.c.staffed.cart(sid).total_minor == 135
