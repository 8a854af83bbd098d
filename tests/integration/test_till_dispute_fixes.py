"""Regression tests of a newcomer's break-test of the till and of disputes, through the
service layer and the HTTP API:

1. a Z report can be read again once the drawer is closed (``GET /staff/tills/{till}/drawers``
   and ``.../drawers/{drawer_id}``), and a Z report sent again with the same content answers
   with the stored report instead of 404;
2. a cash refund larger than the cash the open drawer is expected to hold is refused (409),
   nothing stored changes, so a drawer never reads negative;
3. ``payments.refunded_minor`` holds what disputes refunded to that capture, and a capture
   is never refunded more than it took, also for refunds made before the column was kept;
4. ``/me/trips`` shows what a dispute refunded and the total of the latest receipt version.

Money is integer minor units; times UTC.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from cart.session import RecordItem
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import AmendedReceipt, CashDrawer, Dispute, Payment
from storefront.errors import Conflict, NotFound, PaymentError
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import build_privacy
from storefront.security.client import authenticated
from storefront.settings import Settings
from tests.integration.test_staffed_service import Clock

_SEQ = itertools.count(1)  # device sequence numbers of the shelf's events


class Flaky:
    """The simulated processor; the next ``fail_refunds`` refunds fail."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        self.inner = inner
        self.fail_refunds = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def refund(self, **kw: Any) -> Any:
        if self.fail_refunds:
            self.fail_refunds -= 1
            raise PaymentError("processor answered 503 (test)")
        return self.inner.refund(**kw)


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Flaky]]:
    """A store on SQLite and on PostgreSQL selling TEA at 1.29 GBP."""
    clock = Clock()
    processor = Flaky(SimulatedProcessor(seed=3, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                          processor=processor, clock=clock)  # type: ignore[arg-type]
    container.catalogue.upsert([make_item("TEA", "Tea", 129, "GBP")])
    yield container, clock, processor
    container.close()


def _cash_sale(c: Container, clock: Clock, *, till: str, qty: int = 2,
               handed: int = 1000, key: str = "c") -> str:
    """A staffed sale of ``qty`` TEA paid in cash at ``till`` (its drawer open); returns the
    receipt id."""
    shopper = c.shoppers.register(display_name="Lior", payment_token="tok_lior").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TEA", qty, "d", 1, clock.now, 1.0))
    c.carts.send_to_staffed(sid, "payment declined (test)")
    c.read_model.update(sid, status="staffed", staffed_reason="payment declined (test)")
    c.staffed.claim(session_id=sid, staff_id="ann")
    c.staffed.take_tender(session_id=sid, staff_id="ann", kind="cash", key=key,
                          till_id=till, amount_minor=handed)
    return c.staffed.close(session_id=sid, staff_id="ann").receipt_id


def _paid_exit(c: Container, clock: Clock, qty: int, token: str = "tok_dana",
               shopper: str | None = None) -> str:
    """A checkout-free trip of ``qty`` TEA paid by the card on file; returns the receipt."""
    shopper = shopper or c.shoppers.register(display_name="Dana", payment_token=token).id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TEA", qty, "shelf", next(_SEQ), clock.now,
                                        1.0))
    out = c.checkout.exit(sid)
    assert out.status == "paid" and out.receipt_id, out
    return out.receipt_id


def _count(c: Container, table: Any) -> int:
    with c.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# --- 1: Z reports can be read again -------------------------------------------------------


def test_a_closed_drawer_keeps_its_z_report_and_a_resent_z_report_replays_it(
        store: Any) -> None:
    c, clock, _ = store
    opened = c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=1000)
    _cash_sale(c, clock, till="T1")  # 2.58 taken, 10.00 handed over
    clock.now += timedelta(hours=8)
    z = c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=1250)
    assert (z.kind, z.drawer_id, z.expected_cash_minor, z.counted_minor,
            z.difference_minor) == ("Z", opened.drawer_id, 1258, 1250, -8)
    # The answer was lost: the same Z report again answers with the stored one.
    clock.now += timedelta(minutes=1)
    assert c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=1250) == z
    # Another count, or another manager, is not the same report: refused, nothing changes.
    with pytest.raises(Conflict, match=r"already closed by mia at .* with 12\.50 GBP counted"):
        c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=1258)
    with pytest.raises(Conflict, match="already closed by mia"):
        c.till.close_drawer(till_id="T1", staff_id="bob", counted_minor=1250)
    assert c.till.drawer(till_id="T1", drawer_id=z.drawer_id) == z
    assert c.till.drawers(till_id="T1") == [z]
    with pytest.raises(NotFound, match="closed"):  # the X report is of an open drawer
        c.till.x_report(till_id="T1")

    # A new drawer: listed first, as its X report; the closed one keeps its Z report.
    clock.now += timedelta(hours=1)
    second = c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=500)
    assert c.till.drawers(till_id="T1") == [second, z]
    assert c.till.drawers(till_id="T1", limit=1) == [second]
    with pytest.raises(NotFound):  # a drawer of another till
        c.till.drawer(till_id="T2", drawer_id=z.drawer_id)
    with pytest.raises(NotFound, match="no cash drawer"):
        c.till.close_drawer(till_id="T2", staff_id="mia", counted_minor=0)
    assert c.till.drawers(till_id="T2") == []
    with pytest.raises(ValueError):
        c.till.drawers(till_id="T1", limit=0)


def test_a_stored_z_report_stays_what_it_was_when_the_drawer_closed(store: Any) -> None:
    """The expected cash (and so the difference) read back is the one stored at close."""
    c, clock, _ = store
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=1000)
    _cash_sale(c, clock, till="T1")
    z = c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=1258)
    with c.db() as db:
        row = db.get(CashDrawer, z.drawer_id)
        assert row is not None and (row.expected_minor, row.counted_minor) == (1258, 1258)
    assert c.till.drawer(till_id="T1", drawer_id=z.drawer_id).difference_minor == 0


# --- 2: a cash refund never drives a drawer negative --------------------------------------


def test_a_cash_refund_over_the_cash_in_the_drawer_is_refused(store: Any) -> None:
    c, clock, _ = store
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=1000)
    receipt = _cash_sale(c, clock, till="T1")
    c.till.open_drawer(till_id="T4", staff_id="ann", float_minor=0)
    before = c.till.x_report(till_id="T4")
    with pytest.raises(Conflict, match=r"1\.29 GBP, is more than the cash drawer at till T4 "
                                       r"is expected to hold \(0\.00 GBP\)"):
        c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                           quantity=1, reason="broken", till_id="T4")
    assert (_count(c, Dispute), _count(c, AmendedReceipt)) == (0, 0)
    assert c.till.x_report(till_id="T4") == before
    assert c.receipts.latest(receipt).id == receipt
    # Paid out where the cash is, it goes through; the drawer holds exactly what it paid.
    done = c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                              quantity=1, reason="broken", till_id="T1")
    assert (done.state, done.cash_refund_minor) == ("refunded", 129)
    x = c.till.x_report(till_id="T1")
    assert (x.cash_refunds_minor, x.expected_cash_minor) == (129, 1000 + 258 - 129)


def test_a_cash_refund_may_empty_the_drawer_but_not_more(store: Any) -> None:
    c, clock, _ = store
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=0)
    receipt = _cash_sale(c, clock, till="T1", qty=2, handed=258)
    c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                       quantity=1, reason="broken", till_id="T1")
    assert c.till.x_report(till_id="T1").expected_cash_minor == 129
    c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=129)
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=100)
    with pytest.raises(Conflict, match=r"expected to hold \(1\.00 GBP\)"):
        c.disputes.dispute(receipt_id=receipt, dispute_key="d2", product_code="TEA",
                           quantity=1, reason="broken", till_id="T1")
    assert c.till.x_report(till_id="T1").expected_cash_minor == 100
    c.till.close_drawer(till_id="T1", staff_id="mia", counted_minor=100)
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=129)
    done = c.disputes.dispute(receipt_id=receipt, dispute_key="d2", product_code="TEA",
                              quantity=1, reason="broken", till_id="T1")
    assert done.cash_refund_minor == 129
    assert c.till.x_report(till_id="T1").expected_cash_minor == 0


def test_cash_change_is_paid_from_the_cash_handed_over_and_never_drives_a_drawer_negative(
        store: Any) -> None:
    """Documented decision: a cash tender's change is less than the cash handed over, which
    goes into the drawer first, so change never takes the expected cash below the float;
    an empty drawer still takes a note larger than the sale (the cashier sees whether the
    notes make change; denominations are not tracked)."""
    c, clock, _ = store
    c.till.open_drawer(till_id="T1", staff_id="ann", float_minor=0)
    _cash_sale(c, clock, till="T1", qty=1, handed=5000)
    x = c.till.x_report(till_id="T1")
    assert (x.change_given_minor, x.cash_sales_minor, x.expected_cash_minor) == (
        4871, 129, 129)


# --- 3: payments.refunded_minor -----------------------------------------------------------


def _refunded(c: Container) -> list[int]:
    with c.db() as db:
        return [int(p.refunded_minor) for p in db.scalars(sa.select(Payment))]


def test_card_refunds_of_disputes_are_kept_in_payments_refunded_minor(store: Any) -> None:
    c, clock, processor = store
    receipt = _paid_exit(c, clock, qty=3)
    assert _refunded(c) == [0]
    first = c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                               quantity=1, reason="broken")
    assert (first.state, first.card_refund_minor) == ("refunded", 129)
    assert _refunded(c) == [129]
    assert c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                              quantity=1, reason="broken") == first  # a replay adds nothing
    assert _refunded(c) == [129]
    # A failed refund call adds nothing; its resend adds what it refunded, once.
    processor.fail_refunds = 1
    args = {"receipt_id": receipt, "dispute_key": "d2", "product_code": "TEA",
            "quantity": 2, "reason": "broken"}
    with pytest.raises(PaymentError):
        c.disputes.dispute(**args)
    assert _refunded(c) == [129]
    assert c.disputes.dispute(**args).state == "refunded"
    assert _refunded(c) == [387]
    with c.db() as db:
        pay = db.scalars(sa.select(Payment)).one()
        assert pay.refunded_minor == pay.captured_minor == 387


def test_refunds_made_before_the_column_was_kept_are_not_refunded_twice(store: Any) -> None:
    """A dispute refunded while ``refunded_minor`` stayed 0 (before this fix) still counts:
    the capture's refundable amount takes the larger of the column and the disputes' parts."""
    c, clock, _ = store
    receipt = _paid_exit(c, clock, qty=2)
    c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                       quantity=1, reason="broken")
    with c.db.begin() as db:  # as stored before the column was kept
        db.execute(sa.update(Payment).values(refunded_minor=0))
        db.execute(sa.update(Payment).values(captured_minor=200))  # less was taken
    with pytest.raises(Conflict, match="more than this sale was paid"):
        c.disputes.dispute(receipt_id=receipt, dispute_key="d2", product_code="TEA",
                           quantity=1, reason="broken")


# --- 4: /me/trips shows refunds -----------------------------------------------------------


def test_trips_show_what_disputes_refunded_and_the_amended_total(store: Any) -> None:
    c, clock, processor = store
    privacy = build_privacy(c, clock=clock)
    shopper = c.shoppers.register(display_name="Dana", payment_token="tok_dana").id
    receipt = _paid_exit(c, clock, qty=3, shopper=shopper)
    clock.now += timedelta(minutes=5)
    other = _paid_exit(c, clock, qty=1, shopper=shopper)
    trips = privacy.portal.trips(shopper)
    assert [(t.receipt_id, t.total_minor, t.refunded_minor, t.refund_pending_minor,
             t.current_total_minor) for t in trips] == [
        (other, 129, 0, 0, 129), (receipt, 387, 0, 0, 387)]
    c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                       quantity=1, reason="broken")
    processor.fail_refunds = 1
    with pytest.raises(PaymentError):  # its card refund is still to be made
        c.disputes.dispute(receipt_id=receipt, dispute_key="d2", product_code="TEA",
                           quantity=1, reason="broken")
    trip = [t for t in privacy.portal.trips(shopper) if t.receipt_id == receipt][0]
    assert (trip.total_minor, trip.refunded_minor, trip.refund_pending_minor,
            trip.current_total_minor) == (387, 129, 129, 129)
    assert trip.current_total_minor == c.receipts.latest(receipt).total_minor
    c.disputes.dispute(receipt_id=receipt, dispute_key="d2", product_code="TEA",
                       quantity=1, reason="broken")
    trip = [t for t in privacy.portal.trips(shopper) if t.receipt_id == receipt][0]
    assert (trip.refunded_minor, trip.refund_pending_minor, trip.current_total_minor) == (
        258, 0, 129)


# --- over HTTP --------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Container]]:
    """The API over a SQLite store; ``cas`` is a cashier, other staff are managers."""
    c = bootstrap(Settings(data_dir=tmp_path / "store"),
                  processor=SimulatedProcessor(seed=7, decline_rate=0.0))
    c.catalogue.upsert([make_item("TEA", "Tea", 129, "GBP")])
    app = create_app(c)
    app.state.privacy = build_privacy(c, hasher=PasswordHasher(
        time_cost=1, memory_cost=1024, parallelism=1))
    with authenticated(TestClient(app), c.security, c.settings.store_id,
                       roles={"cas": "cashier"}) as client:
        yield client, c
    c.close()


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_z_reports_over_http_replay_and_list(api: Any) -> None:
    client, c = api
    _ok(client.post("/staff/tills/T1/open", json={"staff_id": "ann", "float_minor": 1000}), 201)
    _cash_sale(c, Clock(), till="T1")
    z = _ok(client.post("/staff/tills/T1/z-report",
                        json={"staff_id": "mia", "counted_minor": 1250}))
    assert (z["kind"], z["expected_cash_minor"], z["counted_minor"],
            z["difference_minor"]) == ("Z", 1258, 1250, -8)
    assert _ok(client.post("/staff/tills/T1/z-report",
                           json={"staff_id": "mia", "counted_minor": 1250})) == z
    other = client.post("/staff/tills/T1/z-report", json={"staff_id": "mia",
                                                          "counted_minor": 1300})
    assert other.status_code == 409 and "already closed" in other.json()["reason"]
    assert client.get("/staff/tills/T1/x-report").status_code == 404
    assert _ok(client.get("/staff/tills/T1/drawers", headers={
        "Authorization": f"Bearer {client.auth.token('mia')}"})) == [z]
    assert _ok(client.get(f"/staff/tills/T1/drawers/{z['drawer_id']}", headers={
        "Authorization": f"Bearer {client.auth.token('mia')}"})) == z
    assert client.get("/staff/tills/T1/drawers/drw_nope").status_code == 404
    assert client.get(f"/staff/tills/T2/drawers/{z['drawer_id']}").status_code == 404
    assert client.get("/staff/tills/T1/drawers?limit=0").status_code == 422
    cashier = {"Authorization": f"Bearer {client.auth.token('cas')}"}
    for path in ("/staff/tills/T1/drawers", f"/staff/tills/T1/drawers/{z['drawer_id']}"):
        assert client.get(path, headers=cashier).status_code == 403, path


def test_a_cash_refund_over_the_drawer_is_409_over_http(api: Any) -> None:
    client, c = api
    _ok(client.post("/staff/tills/T1/open", json={"staff_id": "ann", "float_minor": 1000}), 201)
    receipt = _cash_sale(c, Clock(), till="T1")
    _ok(client.post("/staff/tills/T4/open", json={"staff_id": "ann", "float_minor": 0}), 201)
    body = {"dispute_key": "d1", "product_code": "TEA", "quantity": 1, "reason": "broken",
            "till_id": "T4"}
    r = client.post(f"/receipts/{receipt}/disputes", json=body)
    assert r.status_code == 409 and "expected to hold" in r.json()["reason"], r.text
    assert _ok(client.get("/staff/tills/T4/x-report"))["expected_cash_minor"] == 0
    done = _ok(client.post(f"/receipts/{receipt}/disputes", json=body | {"till_id": "T1"}), 201)
    assert done["cash_refund_minor"] == 129


def test_me_trips_shows_the_refund_over_http(api: Any) -> None:
    client, c = api
    password = "correct horse battery"
    shopper = _ok(client.post("/auth/signup", json={
        "email": "dana@example.org", "password": password, "display_name": "Dana",
        "payment_token": "tok_dana"}), 201)["shopper_id"]
    token = _ok(client.post("/auth/login", json={"email": "dana@example.org",
                                                 "password": password}))["token"]
    me = {"Authorization": f"Bearer {token}"}
    receipt = _paid_exit(c, Clock(), qty=3, shopper=shopper)
    _ok(client.post(f"/receipts/{receipt}/disputes", json={
        "dispute_key": "d1", "product_code": "TEA", "quantity": 1, "reason": "broken"}), 201)
    trips = _ok(client.get("/me/trips", headers=me))
    assert [(t["receipt_id"], t["total_minor"], t["refunded_minor"],
             t["refund_pending_minor"], t["current_total_minor"]) for t in trips] == [
        (receipt, 387, 129, 0, 258)]
    assert _ok(client.get(f"/me/receipts/{receipt}", headers=me))["total_minor"] == 258


def test_the_portal_trips_page_shows_the_amended_total_and_the_refunds() -> None:
    from storefront.privacy.portal import Trip
    from storefront.web.render import templates

    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    amended = Trip("s1", "store-1", "palm", "settled", at, at, 387, "rct_1", "GBP", 129, 129,
                   129)
    plain = Trip("s2", "store-1", "palm", "settled", at, at, 200, "rct_2", "GBP")
    html = templates.env.get_template("portal/trips.html").render(
        trips=[amended, plain], nav="trips", user=None, csrf="x")
    text = " ".join(html.split())
    assert ("1.29 GBP <br><small>was 3.87 GBP; 1.29 GBP refunded; 1.29 GBP being "
            "refunded</small>") in text
    assert '<td class="num">2.00 GBP</td>' in text
