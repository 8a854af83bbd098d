"""The enrolment kiosk page (/kiosk/enrol) driven like a browser: a shopper signed in through
the portal login page uploads synthetic palm captures with the page's CSRF token.

Each capture comes back accepted or refused with its reason; fewer than three files, an
unticked consent with none recorded, or a missing CSRF token store nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from identity.imageio import encode_png
from storefront.db.models import BiometricConsent, PalmEnrolment
from storefront.privacy.consent import CONSENT_TEXTS, CURRENT_TEXT_VERSION
from storefront.privacy.wiring import Privacy, build_privacy

PASSWORD = "correct horse battery"
BLANK = encode_png(np.full((160, 160), 128, dtype=np.uint8))
GARBAGE = b"this is not an image at all" * 10


class _Text(HTMLParser):
    """Collects the page's text, the first h1, input attributes and table rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.h1, self.text = "", ""
        self.inputs: list[dict[str, str]] = []
        self.rows: list[list[str]] = []
        self.labels: dict[str, str] = {}
        self._in: list[str] = []
        self._label_for = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "input":
            self.inputs.append(values)
            return
        if tag == "tr":
            self.rows.append([])
        if tag == "td":
            self.rows[-1].append("")
        if tag == "label":
            self._label_for = values.get("for", "")
            self.labels[self._label_for] = ""
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            del self._in[len(self._in) - 1 - self._in[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        self.text += data
        if "h1" in self._in:
            self.h1 += data
        if "td" in self._in and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data
        if "label" in self._in:
            self.labels[self._label_for] += data


def parse(html: str) -> _Text:
    page = _Text()
    page.feed(html)
    page.h1 = " ".join(page.h1.split())
    page.text = " ".join(page.text.split())
    page.rows = [[" ".join(c.split()) for c in row] for row in page.rows if row]
    return page


def control(page: _Text, label: str) -> dict[str, str]:
    """The attributes of the input whose label reads ``label``."""
    ids = [k for k, v in page.labels.items() if " ".join(v.split()) == label]
    assert ids, f"no label {label!r}"
    return next(i for i in page.inputs if i.get("id") == ids[0])


class Kiosk:
    """A signed-in shopper at the kiosk."""

    def __init__(self, app: Any, privacy: Privacy, name: str) -> None:
        self.client, self.privacy = TestClient(app), privacy
        self.db = app.state.container.db
        r = self.client.post("/auth/signup", json={
            "email": f"{name}@example.org", "password": PASSWORD,
            "display_name": name.title(), "payment_token": f"tok_{name}"})
        assert r.status_code == 201, r.text
        self.id: str = r.json()["shopper_id"]
        self.email = f"{name}@example.org"
        self.sign_in()

    def sign_in(self) -> None:
        """Sign in at the portal login page, coming back to the kiosk."""
        r = self.client.post("/portal/login", data={
            "email": self.email, "password": PASSWORD, "next": "/kiosk/enrol"},
            follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/kiosk/enrol"

    def csrf(self) -> str:
        page = parse(self.client.get("/kiosk/enrol").text)
        return next(i["value"] for i in page.inputs if i.get("name") == "csrf")

    def enrol(self, files: list[tuple[str, bytes]], *, consent: bool = True,
              csrf: bool = True) -> tuple[int, _Text]:
        data = {"csrf": self.csrf()} if csrf else {}
        if consent:
            data["consent"] = "yes"
        parts = [("captures", (name, body, "image/png")) for name, body in files]
        r = self.client.post("/kiosk/enrol", data=data, files=parts)
        return r.status_code, parse(r.text)

    def stored(self) -> tuple[int, int]:
        """(palm enrolments, consent records) of this shopper in the database."""
        with self.db() as db:
            palms = db.scalar(sa.select(sa.func.count()).select_from(PalmEnrolment)
                              .where(PalmEnrolment.shopper_id == self.id))
            consents = db.scalar(sa.select(sa.func.count()).select_from(BiometricConsent)
                                 .where(BiometricConsent.shopper_id == self.id))
        return int(palms or 0), int(consents or 0)


@pytest.fixture
def kiosk(make_store: Callable[..., Any]) -> tuple[Any, Callable[[str], Kiosk]]:
    store = make_store()
    app = store.client.app
    app.state.privacy = build_privacy(
        store.container, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return store, lambda name: Kiosk(app, app.state.privacy, name)


def good(store: Any, palm: int, captures: range) -> list[tuple[str, bytes]]:
    return [(f"palm{palm}-{c}.png", store.palm_png(palm, c)) for c in captures]


def test_the_kiosk_needs_a_signed_in_shopper(kiosk: tuple[Any, Any]) -> None:
    store, _ = kiosk
    stranger = TestClient(store.client.app)
    for method in ("GET", "POST"):
        r = stranger.request(method, "/kiosk/enrol", follow_redirects=False)
        assert r.status_code == 303
        assert unquote(r.headers["location"]) == "/portal/login?next=/kiosk/enrol"
    assert stranger.get("/kiosk", follow_redirects=False).headers["location"] == "/kiosk/enrol"


def test_the_page_shows_consent_and_the_capture_upload(kiosk: tuple[Any, Any]) -> None:
    _, shopper = kiosk
    ann = shopper("ann")
    page = parse(ann.client.get("/kiosk/enrol").text)
    assert page.h1 == "Enrol your palm"
    assert CONSENT_TEXTS[CURRENT_TEXT_VERSION] in page.text
    box = control(page, "I have read and agree to palm identification")
    assert box["type"] == "checkbox" and "required" in box
    upload = control(page, "Palm captures")
    assert upload["type"] == "file" and "multiple" in upload and upload["accept"] == "image/*"
    assert "At least 3 photos of the same palm" in page.text


def test_three_good_captures_enrol_the_palm(kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann = shopper("ann")
    status, page = ann.enrol(good(store, 3, range(3)))
    assert status == 200, page.text
    assert page.h1 == "Palm enrolled" and "3 of your 3 captures were stored" in page.text
    assert page.rows == [[f"palm3-{c}.png", "Accepted"] for c in range(3)]
    assert ann.stored() == (1, 1)
    assert store.container.gates.enter_by_palm(image=store.palm_png(3, 5)).shopper_id == ann.id
    palms = ann.privacy.portal.palms(ann.id)
    assert palms[0].store_id == store.container.settings.store_id
    actions = {e.action: e.actor for e in store.container.audit.entries(
        subject=f"shopper:{ann.id}")}
    assert actions["enrol"] == f"shopper:{ann.id}"


def test_a_blank_and_a_garbage_capture_are_refused_with_the_reason(
        kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann = shopper("ann")
    files = [*good(store, 4, range(3)), ("blank.png", BLANK), ("garbage.png", GARBAGE)]
    status, page = ann.enrol(files)
    assert status == 200 and page.h1 == "Palm enrolled"
    outcomes = dict(row for row in page.rows)
    assert [outcomes[f"palm4-{c}.png"] for c in range(3)] == ["Accepted"] * 3
    for name in ("blank.png", "garbage.png"):
        assert outcomes[name].startswith("Refused: ") and len(outcomes[name]) > 15, outcomes
        assert not outcomes[name].startswith(("Refused: invalid_image",
                                              "Refused: failure_to_acquire"))  # words only
    assert outcomes["blank.png"] != outcomes["garbage.png"]
    assert ann.privacy.portal.palms(ann.id)[0].templates == 3


def test_no_usable_capture_or_a_palm_of_another_account_is_refused(
        kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann, bob = shopper("ann"), shopper("bob")
    status, page = ann.enrol([("a.png", BLANK), ("b.png", GARBAGE), ("c.png", BLANK)])
    assert status == 422 and page.h1 == "Palm not enrolled"
    assert "none of the 3 captures shows a usable palm" in page.text
    assert "No palm data was stored" in page.text
    assert all(row[1].startswith("Refused: ") for row in page.rows)
    assert ann.stored()[0] == 0
    assert "signed out of this kiosk" in page.text  # a refusal signs out too
    assert ann.client.get("/kiosk/enrol", follow_redirects=False).status_code == 303
    ann.sign_in()
    assert ann.enrol(good(store, 5, range(3)))[0] == 200
    status, page = bob.enrol(good(store, 5, range(3, 6)))
    assert status == 422 and "already enrolled for another account" in page.text
    assert [row[1] for row in page.rows] == ["Accepted"] * 3
    assert bob.stored()[0] == 0


def test_fewer_than_three_files_store_nothing(kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann = shopper("ann")
    for files in ([], good(store, 6, range(2))):
        status, page = ann.enrol(files)
        assert status == 422 and page.h1 == "Enrol your palm"
        assert "choose 3 to 20 photos" in page.text and "nothing was stored" in page.text
    status, page = ann.enrol([*good(store, 6, range(2)), ("empty.png", b"")])
    assert status == 422 and "'empty.png' is empty" in page.text
    assert ann.stored() == (0, 0)


def test_without_consent_nothing_is_stored(kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann = shopper("ann")
    status, page = ann.enrol(good(store, 7, range(3)), consent=False)
    assert status == 409 and page.h1 == "Enrol your palm"
    assert "consent_required" in page.text and "no consent to palm identification" in page.text
    assert ann.stored() == (0, 0)
    assert not store.container.gates.enter_by_palm(image=store.palm_png(7, 5)).admitted
    # With consent recorded earlier (the portal's "Give consent"), no tick is needed.
    ann.privacy.consents.give(shopper_id=ann.id, purpose="palm_identification",
                              text_version=CURRENT_TEXT_VERSION)
    assert ann.enrol(good(store, 7, range(3)), consent=False)[0] == 200
    assert ann.stored() == (1, 1)


def test_a_missing_csrf_token_is_refused_and_stores_nothing(kiosk: tuple[Any, Any]) -> None:
    store, shopper = kiosk
    ann = shopper("ann")
    status, page = ann.enrol(good(store, 8, range(3)), csrf=False)
    assert status == 403 and page.h1 == "Not allowed"
    assert ann.stored() == (0, 0)


def test_after_enrolling_the_shopper_is_signed_out_and_a_resent_form_stores_nothing(
        kiosk: tuple[Any, Any]) -> None:
    """The kiosk is shared: success signs the shopper out. The same form sent again (a
    double click, or the next person pressing Back) is sent to sign-in; signed in again,
    the same palm is refused as already enrolled on the account."""
    store, shopper = kiosk
    ann = shopper("ann")
    csrf, token = ann.csrf(), ann.client.cookies.get("sf_shopper")
    parts = [("captures", (n, b, "image/png")) for n, b in good(store, 9, range(3))]
    first = ann.client.post("/kiosk/enrol", data={"csrf": csrf, "consent": "yes"}, files=parts)
    assert first.status_code == 200 and "signed out of this kiosk" in parse(first.text).text
    assert ann.client.get("/portal", follow_redirects=False).status_code == 303
    again = TestClient(store.client.app, cookies={"sf_shopper": token or ""})
    resent = again.post("/kiosk/enrol", data={"csrf": csrf, "consent": "yes"}, files=parts,
                        follow_redirects=False)
    assert resent.status_code == 303 and "/portal/login" in resent.headers["location"]
    assert ann.stored() == (1, 1)
    ann.sign_in()
    status, page = ann.enrol(good(store, 9, range(3, 6)))
    assert status == 422 and "already enrolled on this account" in page.text
    assert "No palm data was stored" in page.text and ann.stored()[0] == 1


def test_the_kiosk_shows_who_is_signed_in(kiosk: tuple[Any, Any]) -> None:
    _, shopper = kiosk
    ann = shopper("ann")
    page = parse(ann.client.get("/kiosk/enrol").text)
    assert "Signed in as Ann (ann@example.org). Not you? Sign out first." in page.text


def test_captures_of_different_palms_or_too_few_usable_are_refused(
        kiosk: tuple[Any, Any]) -> None:
    """Three palms in one enrolment would all be identified as this shopper; one usable
    capture of three is not enough at the kiosk (it asks for three)."""
    store, shopper = kiosk
    ann = shopper("ann")
    mixed = [(f"palm{p}.png", store.palm_png(p, 0)) for p in (10, 11, 12)]
    status, page = ann.enrol(mixed)
    assert status == 422 and "do not show one palm" in page.text
    odd = [row for row in page.rows if "does not match the other captures" in row[1]]
    assert len(odd) == 2  # one capture stands for the palm, the two others do not match it
    assert ann.stored()[0] == 0
    ann.sign_in()
    status, page = ann.enrol([("good.png", store.palm_png(13, 0)), ("blank.png", BLANK),
                              ("garbage.png", GARBAGE)])
    assert status == 422 and "1 usable capture(s), 3 needed" in page.text
    assert ann.stored()[0] == 0
