"""The shopper portal pages (/portal) driven like a browser: HTML parsed, forms posted with
their CSRF token, two shoppers signed in through the login page with their own cookies.

Shoppers sign up through ``POST /auth/signup``, enrol a synthetic palm, walk through the
gate and check out, so each has a settled trip with a receipt to look at and dispute.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from html_tree import Node, parse

from storefront.catalog import make_item
from storefront.db.models import AmendedReceipt, Dispute
from storefront.privacy.export import ExportService
from storefront.privacy.wiring import Privacy, build_privacy, export_keys

PASSWORD = "correct horse battery"
HEBREW = "חלב 3% תנובה"


def h1(page: Node) -> str:
    """The page's main heading."""
    return page.find("h1").text()


def flash(page: Node) -> str:
    """The text of the flash message(s) of a page ("" when none)."""
    return " ".join(n.text() for n in page.find_all("div")
                    if n.attrs.get("class", "").startswith("flash"))


def link(page: Node, name: str) -> str:
    """The href of the link whose text is ``name``."""
    hrefs = [a.attrs["href"] for a in page.find_all("a") if a.text() == name]
    assert hrefs, f"no link named {name!r}"
    return hrefs[0]


def form_of(page: Node, action: str) -> Node:
    """The form posting to ``action``."""
    return page.find("form", action=action)


def fields(form: Node) -> dict[str, str]:
    """What a browser would send without edits: hidden/text values, ticked boxes."""
    sent: dict[str, str] = {}
    for node in form.find_all("input"):
        kind, name = node.attrs.get("type", "text"), node.attrs.get("name")
        if not name or kind == "file" or (kind == "checkbox" and "checked" not in node.attrs):
            continue
        sent[name] = node.attrs.get("value", "on")
    for node in form.find_all("textarea"):
        sent[node.attrs["name"]] = node.text()
    return sent


def label_for(page: Node, text: str) -> Node:
    """The control labelled ``text`` (label ``for`` -> id)."""
    labels = [n for n in page.find_all("label") if n.text() == text]
    assert labels, f"no label {text!r}"
    return page.find(id=labels[0].attrs["for"])


class Shopper:
    """One signed-in shopper: their own TestClient (cookie jar) and helpers."""

    def __init__(self, app: Any, name: str) -> None:
        self.client = TestClient(app)
        self.name = name
        r = self.client.post("/auth/signup", json={
            "email": f"{name}@example.org", "password": PASSWORD,
            "display_name": name.title(), "payment_token": f"tok_{name}"})
        assert r.status_code == 201, r.text
        self.id: str = r.json()["shopper_id"]
        self.sign_in()

    def sign_in(self) -> None:
        r = self.client.post("/portal/login", data={"email": f"{self.name}@example.org",
                                                   "password": PASSWORD, "next": "/portal"},
                             follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/portal", r.text
        assert "sf_shopper" in self.client.cookies

    def page(self, path: str, status: int = 200) -> Node:
        r = self.client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text[:500])
        return parse(r.text)

    def submit(self, page: Node, action: str, status: int = 200, **edits: str) -> Node:
        """Post the form to ``action`` as shown plus ``edits``; follow the redirect."""
        data = {**fields(form_of(page, action)), **edits}
        r = self.client.post(action, data=data)
        assert r.status_code == status, (action, r.status_code, r.text[:500])
        return parse(r.text)


@dataclass
class World:
    """The store, its app, the privacy services and two shoppers with one trip each."""

    store: Any
    privacy: Privacy
    ann: Shopper
    bob: Shopper
    receipts: dict[str, str]
    trip: Callable[..., str]


@pytest.fixture
def world(make_store: Callable[..., Any]) -> Iterator[World]:
    store = make_store()
    c = store.container
    c.catalogue.upsert([make_item("APPLE-1", "Apple", 35, "GBP"),
                        make_item("MILK-1", HEBREW, 690, "GBP"),
                        make_item("COFFEE-1", "Coffee beans 1kg", 2500, "GBP")])
    app = store.client.app
    app.state.privacy = build_privacy(
        c, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    ann, bob = Shopper(app, "ann"), Shopper(app, "bob")
    seq = iter(range(1, 1000))

    def trip(shopper: Shopper, palm: int, basket: dict[str, int]) -> str:
        entry = c.gates.enter_by_palm(image=store.palm_png(palm, 5))
        assert entry.shopper_id == shopper.id, entry
        for code, qty in basket.items():
            c.ingest.record(session_id=entry.session_id, kind="picked", product_code=code,
                            quantity=qty, device_id="cart-1", device_seq=next(seq),
                            sensor_time=datetime.now(UTC) - timedelta(seconds=5))
        receipt_id = c.checkout.exit(entry.session_id).receipt_id
        assert receipt_id
        return str(receipt_id)

    receipts = {}
    for shopper, palm in ((ann, 0), (bob, 1)):
        c.shoppers.enrol_palm(shopper_id=shopper.id, consent_text_version="2026-11",
                              images=[store.palm_png(palm, k) for k in range(4)])
        receipts[shopper.name] = trip(shopper, palm,
                                      {"APPLE-1": 2, "MILK-1": 1, "COFFEE-1": 1})
    yield World(store, app.state.privacy, ann, bob, receipts, trip)


def test_pages_redirect_to_login_when_not_signed_in(world: World) -> None:
    stranger = TestClient(world.store.client.app)
    for path in ("/portal", "/portal/trips", "/portal/palms", "/portal/privacy",
                 f"/portal/receipts/{world.receipts['ann']}", "/portal/account/delete",
                 "/portal/palms/delete-all"):
        r = stranger.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        location = r.headers["location"]
        assert location.startswith("/portal/login?next=") and unquote(location[19:]) == path
    r = stranger.post("/portal/palms/delete-all", data={}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    assert len(world.privacy.portal.palms(world.ann.id)) == 1
    # The cookie of a signed-in shopper with a forged value is no sign-in either.
    stranger.cookies.set("sf_shopper", "forged-token")
    assert stranger.get("/portal", follow_redirects=False).status_code == 303


def test_overview_shows_the_profile_and_issues_an_entry_code(world: World) -> None:
    ann = world.ann
    page = ann.page("/portal")
    assert h1(page) == "My account"
    facts = page.find("dl").text()
    assert "Ann" in facts and "ann@example.org" in facts and "Member since" in facts
    assert "Enrolled palms 1" in facts and "Trips 1" in facts
    assert page.find("a", aria_current="page").text() == "Overview"
    for target in ("/portal/trips", "/portal/palms", "/portal/privacy"):
        assert page.find_all("a", href=target)
    page = ann.submit(page, "/portal/entry-code")
    code = page.find("code").text()
    assert len(code) == 10 and "Valid until" in page.text()
    session_id, shopper_id = world.privacy.entry_codes.redeem(code)
    assert shopper_id == ann.id and session_id


def test_trips_list_and_own_receipt_with_hebrew_name(world: World) -> None:
    ann, rid = world.ann, world.receipts["ann"]
    page = ann.page("/portal/trips")
    assert h1(page) == "Trips and receipts"
    table = page.find("table")
    assert table.find("caption").text() == "Your trips, newest first"
    assert "settled" in table.text() and "32.60 GBP" in table.text()
    page = ann.page(link(page, f"Receipt {rid}"))
    assert h1(page) == "Receipt"
    bdis = [n.text() for n in page.find_all("bdi", dir="auto")]
    assert HEBREW in bdis
    cells = page.find("table").text()
    assert "Apple" in cells and "APPLE-1" in cells and "32.60 GBP" in page.text()
    assert "Card 32.60 GBP" in page.text()
    # One dispute form per line, each control labelled and tied to its product.
    forms = page.find_all("form", action=f"/portal/receipts/{rid}/disputes")
    assert len(forms) == 3
    keys = {fields(f)["dispute_key"] for f in forms}
    assert len(keys) == 3
    quantity = label_for(page, "Quantity to dispute")
    described = quantity.attrs["aria-describedby"].split()[0]
    assert page.find(id=described).text() in {"Apple", HEBREW, "Coffee beans 1kg"}
    buttons = [b.text() for b in page.find_all("button") if b.text().startswith("Dispute line")]
    assert sorted(buttons) == sorted(f"Dispute line {n}" for n in
                                     ("Apple", HEBREW, "Coffee beans 1kg"))
    assert page.find("span", class_="visually-hidden").find("bdi", dir="auto")


def test_another_shoppers_receipt_is_a_404_page(world: World) -> None:
    for path in (f"/portal/receipts/{world.receipts['bob']}", "/portal/receipts/rcp_nope"):
        page = world.ann.page(path, status=404)
        assert h1(page) == "Not found" and "does not exist" in page.text()
    r = world.ann.client.post(f"/portal/receipts/{world.receipts['bob']}/disputes", data={
        "csrf": fields(form_of(world.ann.page("/portal"), "/portal/entry-code"))["csrf"],
        "product_code": "APPLE-1", "quantity": "1", "reason": "x", "dispute_key": "k1"})
    assert r.status_code == 404
    assert _disputes(world) == []


def _disputes(world: World) -> list[Dispute]:
    with world.store.container.db() as db:
        return list(db.scalars(sa.select(Dispute)))


def _dispute_form(page: Node, product: str) -> tuple[str, dict[str, str]]:
    for form in page.find_all("form"):
        if form.attrs["action"].endswith("/disputes") and product in form.find("legend").text():
            return form.attrs["action"], fields(form)
    raise AssertionError(f"no dispute form for {product}")


def test_dispute_within_the_limit_refunds_and_shows_the_amended_receipt(world: World) -> None:
    ann, rid = world.ann, world.receipts["ann"]
    page = ann.page(f"/portal/receipts/{rid}")
    action, data = _dispute_form(page, "Apple")
    data.update(quantity="1", reason="one apple was bruised")
    page = parse(ann.client.post(action, data=data).text)
    assert "Refunded 0.35 GBP to your card" in flash(page)
    assert h1(page) == "Receipt" and "Amended receipt" in page.text()
    assert "32.25 GBP" in page.text()
    apple_row = next(r for r in page.find("table").find_all("tr") if "Apple" in r.text())
    assert apple_row.find_all("td")[1].text() == "1"
    [row] = _disputes(world)
    assert (row.state, row.refund_minor, row.product_code) == ("refunded", 35, "APPLE-1")
    assert row.refund_parts[0]["refund_id"]
    # The same form sent again (double click, back button) refunds once.
    page = parse(ann.client.post(action, data=data).text)
    assert len(_disputes(world)) == 1 and "32.25 GBP" in page.text()
    actions = {e.action for e in world.store.container.audit.entries(
        subject=f"receipt:{rid}")}
    assert "refund" in actions


def test_dispute_over_the_limit_is_refused_and_refunds_nothing(world: World) -> None:
    ann, rid = world.ann, world.receipts["ann"]
    page = ann.page(f"/portal/receipts/{rid}")
    assert "up to 20.00 GBP per dispute" in page.text()
    action, data = _dispute_form(page, "Coffee")
    data.update(quantity="1", reason="not what I picked")
    page = parse(ann.client.post(action, data=data).text)
    message = flash(page)
    assert "more than the 20.00 GBP" in message and "ask at the store" in message
    assert "nothing was refunded" in message
    assert _disputes(world) == [] and "32.60 GBP" in page.text()
    with world.store.container.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AmendedReceipt)) == 0
    # Bad input comes back with the reason too, and refunds nothing.
    for quantity, reason, expected in (("0", "x", "at least 1"), ("abc", "x", "whole number"),
                                       ("5", "too many", "only 2"), ("1", "", "reason")):
        action, data = _dispute_form(page, "Apple")
        data.update(quantity=quantity, reason=reason)
        page = parse(ann.client.post(action, data=data).text)
        assert expected in flash(page), (quantity, flash(page))
    assert _disputes(world) == []


def test_palms_list_delete_one_with_confirmation_then_all(world: World) -> None:
    ann, c = world.ann, world.store.container
    c.shoppers.enrol_palm(shopper_id=ann.id, images=[world.store.palm_png(2, k)
                                                     for k in range(3)])
    page = ann.page("/portal/palms")
    assert h1(page) == "Palms"
    rows = page.find("tbody").find_all("tr")
    assert len(rows) == 2 and "store-1" in rows[0].text() and "Never" in rows[1].text()
    assert "template" not in page.find("table").text().lower()
    page = ann.page(link(page, "Delete palm 2"))
    assert h1(page) == "Delete this palm?" and link(page, "Cancel") == "/portal/palms"
    action = next(f.attrs["action"] for f in page.find_all("form")
                  if "Yes, delete this palm" in f.text())
    page = ann.submit(page, action)
    assert "Deleted 1 palm and 3 stored captures" in flash(page)
    assert len(page.find("tbody").find_all("tr")) == 1
    assert not c.gates.enter_by_palm(image=world.store.palm_png(2, 6)).admitted
    page = ann.page(link(page, "Delete all palms"))
    assert "Yes, delete all my palms" in form_of(page, "/portal/palms/delete-all").text()
    page = ann.submit(page, "/portal/palms/delete-all")
    assert "Deleted 1 palm and 4 stored captures" in flash(page)
    assert "You have no enrolled palms" in page.text()
    assert not c.gates.enter_by_palm(image=world.store.palm_png(0, 6)).admitted
    # Bob's palm is untouched, and his palm's page is a 404 page for Ann.
    bob_palm = world.privacy.portal.palms(world.bob.id)[0].id
    ann.page(f"/portal/palms/{bob_palm}/delete", status=404)
    assert c.gates.enter_by_palm(image=world.store.palm_png(1, 6)).shopper_id == world.bob.id


def test_export_prepare_then_download_the_zip(world: World) -> None:
    ann = world.ann
    page = ann.page("/portal/privacy")
    assert h1(page) == "Privacy and data"
    page = ann.submit(page, "/portal/privacy/exports")
    assert "ready to download" in flash(page)
    assert not page.find_all("meta", name="sf-refresh")
    r = ann.client.get(link(page, f"Download export requested {_requested(page)}"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment;")
    data = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("data.json"))
    assert data["shopper_id"] == ann.id and world.bob.id not in json.dumps(data)
    # Another shopper's export is a 404 page.
    world.bob.page(link(page, f"Download export requested {_requested(page)}"), status=404)


def _requested(page: Node) -> str:
    return page.find("tbody").find("td").text()


def test_a_pending_export_refreshes_the_page_until_ready(world: World) -> None:
    held: list[Callable[[], None]] = []
    world.privacy.exports = ExportService(sessions=world.store.container.db,
                                          clock=lambda: datetime.now(UTC), sync_row_limit=0,
                                          keys=export_keys(world.store.container),
                                          start_thread=held.append)
    ann = world.ann
    page = ann.submit(ann.page("/portal/privacy"), "/portal/privacy/exports")
    assert "being prepared" in flash(page) and "Being prepared" in page.find("tbody").text()
    assert page.find("meta", name="sf-refresh").attrs["content"] == "3"
    assert not [a for a in page.find_all("a") if a.text().startswith("Download export")]
    held[0]()
    page = ann.page("/portal/privacy")
    assert not page.find_all("meta", name="sf-refresh")
    assert ann.client.get(link(page, f"Download export requested {_requested(page)}")
                          ).status_code == 200


def test_retention_is_saved_and_invalid_values_change_nothing(world: World) -> None:
    ann = world.ann
    page = ann.page("/portal/privacy")
    assert label_for(page, "Keep palm data after last use (days)").attrs["value"] == "730"
    assert "value" not in label_for(page, "Keep trips (days)").attrs
    page = ann.submit(page, "/portal/privacy/retention", palm_days="90", trip_days="400")
    assert "kept 90 days after its last use; trips are kept 400 days" in flash(page)
    assert label_for(page, "Keep trips (days)").attrs["value"] == "400"
    saved = {"recommendations_opt_out": False, "palm_retention_days": 90,
             "trip_retention_days": 400}
    assert world.privacy.portal.choices(ann.id) == saved
    for palm, trips in (("0", ""), ("3651", ""), ("abc", ""), ("", ""), ("30", "0"),
                        ("30", "99999"), ("30", "1.5")):
        page = ann.submit(page, "/portal/privacy/retention", palm_days=palm, trip_days=trips)
        assert "must be a whole number of days from 1 to 3650" in flash(page), (palm, trips)
        assert world.privacy.portal.choices(ann.id) == saved
    page = ann.submit(page, "/portal/privacy/retention", palm_days="30", trip_days="")
    assert "trips are kept as long as needed" in flash(page)
    assert world.privacy.portal.choices(ann.id)["trip_retention_days"] is None


def test_recommendations_opt_out_toggles_and_shows(world: World) -> None:
    ann, consents = world.ann, world.privacy.consents
    page = ann.page("/portal/privacy")
    box = label_for(page, "Do not use my shopping history for recommendations")
    assert box.attrs["type"] == "checkbox" and "checked" not in box.attrs
    page = ann.submit(page, "/portal/privacy/recommendations", opt_out="yes")
    assert "will not be used" in flash(page)
    assert "checked" in label_for(
        page, "Do not use my shopping history for recommendations").attrs
    assert not consents.may_use_for_recommendations(ann.id)
    assert consents.may_use_for_recommendations(world.bob.id)
    data = fields(form_of(page, "/portal/privacy/recommendations"))
    data.pop("opt_out")  # an unticked box is not sent
    page = parse(ann.client.post("/portal/privacy/recommendations", data=data).text)
    assert "may be used" in flash(page) and consents.may_use_for_recommendations(ann.id)


def test_withdrawing_consent_deletes_the_palms(world: World) -> None:
    ann, c = world.ann, world.store.container
    page = ann.page("/portal/privacy")
    assert "encrypted template of my palm" in page.find("blockquote").text()
    history = page.find_all("table")[-1]
    assert history.find("caption").text() == "Your consent history"
    assert "2026-11" in history.text() and "Not withdrawn" in history.text()
    assert form_of(page, "/portal/privacy/consent/withdraw").attrs.get("method") == "get"
    page = ann.page("/portal/privacy/consent/withdraw")
    assert "deletes all your palm data" in page.text() and "(1 enrolled palm)" in page.text()
    page = ann.submit(page, "/portal/privacy/consent/withdraw")
    assert "Consent withdrawn; 1 palm deleted" in flash(page)
    assert world.privacy.portal.palms(ann.id) == []
    assert not c.gates.enter_by_palm(image=world.store.palm_png(0, 6)).admitted
    assert "Not withdrawn" not in page.find_all("table")[-1].text()
    page = ann.submit(page, "/portal/privacy/consent")
    assert "Consent recorded" in flash(page)
    assert [r.withdrawn_at is None for r in world.privacy.consents.history(ann.id)] == [
        False, True]
    assert len(world.privacy.portal.palms(world.bob.id)) == 1


def test_account_deletion_needs_DELETE_then_the_cookie_no_longer_works(world: World) -> None:
    ann = world.ann
    page = ann.page("/portal/privacy")
    page = ann.page(link(page, "Delete my account"))
    assert h1(page) == "Delete your account?"
    assert "Kept, without your name" in page.text() and "Receipts" in page.text()
    assert label_for(page, "Type DELETE to confirm").attrs["name"] == "confirm"
    for wrong in ("", "delete", "DELETE ME"):
        page = ann.submit(page, "/portal/account/delete", confirm=wrong)
        assert "Type DELETE" in flash(page) and "nothing was deleted" in flash(page)
    assert world.privacy.portal.profile(ann.id).email == "ann@example.org"
    old_cookie = ann.client.cookies["sf_shopper"]
    data = {**fields(form_of(page, "/portal/account/delete")), "confirm": "DELETE"}
    r = ann.client.post("/portal/account/delete", data=data)
    assert r.status_code == 200
    assert 'sf_shopper=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    page = parse(r.text)
    assert h1(page) == "Your account is deleted"
    assert "Receipts 1" in page.text() and "Enrolled palms 1" in page.text()
    assert "sf_shopper" not in ann.client.cookies
    ann.client.cookies.set("sf_shopper", old_cookie)
    r = ann.client.get("/portal", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    r = ann.client.post("/portal/login", data={"email": "ann@example.org",
                                               "password": PASSWORD})
    assert r.status_code == 401
    assert world.bob.page("/portal").find("dl").text().count("Bob") == 1


def test_forms_without_a_valid_csrf_token_change_nothing(world: World) -> None:
    ann = world.ann
    page = ann.page("/portal/palms/delete-all")
    good = fields(form_of(page, "/portal/palms/delete-all"))
    for data, headers in (({}, {}), ({"csrf": "0" * 64}, {}),
                          ({"csrf": fields(form_of(world.bob.page("/portal"),
                                                   "/portal/entry-code"))["csrf"]}, {}),
                          (good, {"Origin": "https://evil.example"})):
        r = ann.client.post("/portal/palms/delete-all", data=data, headers=headers)
        assert r.status_code == 403, (data, headers)
        assert h1(parse(r.text)) == "Not allowed"
    assert len(world.privacy.portal.palms(ann.id)) == 1
    r = ann.client.post("/portal/account/delete", data={"confirm": "DELETE"})
    assert r.status_code == 403
    assert world.privacy.portal.profile(ann.id).id == ann.id
    rid = world.receipts["ann"]
    action, data = _dispute_form(ann.page(f"/portal/receipts/{rid}"), "Apple")
    data.pop("csrf")
    assert ann.client.post(action, data=data | {"reason": "x"}).status_code == 403
    assert _disputes(world) == []


def test_trips_are_newest_first(world: World) -> None:
    second = world.trip(world.ann, 0, {"APPLE-1": 1})
    page = world.ann.page("/portal/trips")
    links = [a.text() for a in page.find("tbody").find_all("a")]
    assert links == [f"Receipt {second}", f"Receipt {world.receipts['ann']}"]

