"""The portal's palms page makes the enrolment code a shopper shows to staff: shown once,
valid ten minutes, accepted by the staff enrolment route once, never by a gate."""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher

from storefront.privacy.wiring import build_privacy
from tests.e2e.test_web_portal import Shopper, flash, form_of


def test_palms_page_issues_an_enrolment_code_staff_can_use(make_store: Any) -> None:
    store = make_store()
    app = store.client.app
    app.state.privacy = build_privacy(
        store.container, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    ann = Shopper(app, "ann")
    page = ann.page("/portal/palms")
    assert "Enrol with the help of staff" in page.text()
    page = ann.submit(page, "/portal/palms/enrolment-code")
    code = page.find("code").text()
    assert len(code) == 10 and "Valid until" in page.text()
    assert form_of(page, "/portal/palms/enrolment-code")  # the button is still there
    files = [("images", (f"{c}.png", store.palm_png(4, c), "image/png")) for c in range(4)]
    r = store.client.post(f"/shoppers/{ann.id}/palms", files=files,
                          data={"consent_text_version": "2026-11", "enrolment_code": code})
    assert r.status_code == 201, r.text
    assert len(app.state.privacy.portal.palms(ann.id)) == 1
    again = store.client.post(f"/shoppers/{ann.id}/palms", files=files,
                              data={"enrolment_code": code})
    assert again.status_code == 403  # used once


def test_too_many_unused_codes_is_a_message_on_the_page_not_an_error_page(
        make_store: Any) -> None:
    store = make_store()
    app = store.client.app
    app.state.privacy = build_privacy(
        store.container, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    ann = Shopper(app, "ann")
    for path, action in (("/portal/palms", "/portal/palms/enrolment-code"),
                         ("/portal", "/portal/entry-code")):
        codes = set()
        for _ in range(5):  # at most five unused codes of a purpose at a time
            page = ann.submit(ann.page(path), action)
            codes.add(page.find("code").text())
        assert len(codes) == 5
        page = ann.submit(ann.page(path), action)
        assert "unused" in flash(page), flash(page)
        assert not page.find_all("code")  # no sixth code was shown
