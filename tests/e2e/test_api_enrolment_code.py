"""Staff-assisted enrolment over HTTP needs the shopper's enrolment code: 403 with nothing
stored without it (or with a wrong, used or another shopper's code, or for a shopper
registered by staff without an account), 429 after too many wrong codes, and the consent
given at the staff point is recorded as the staff member's."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storefront.db.models import BiometricConsent, PalmTemplate


def _files(store: Any, palm: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{c}.png", store.palm_png(palm, c), "image/png")) for c in range(4)]


def _templates(store: Any) -> int:
    with store.container.db() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(PalmTemplate)) or 0)


def test_staff_enrolment_needs_the_shoppers_code(make_store: Any) -> None:
    store = make_store()
    c = store.client
    ann, bob = store.register("Ann"), store.register("Bob")
    form = {"consent_text_version": "2026-11"}
    for data in (form, {**form, "enrolment_code": "0000000000"},
                 {**form, "enrolment_code": store.enrolment_code(bob)}):
        body = store.error_of(c.post(f"/shoppers/{ann}/palms", files=_files(store, 1),
                                     data=data), 403)
        assert body["error"] == "enrolment_code_refused" and "sign up first" in body["reason"]
    walk_in = c.post("/shoppers", json={"display_name": "Cy", "payment_token": "tok_cy"})
    body = store.error_of(c.post(f"/shoppers/{walk_in.json()['id']}/palms",
                                 files=_files(store, 1), data=form), 403)
    assert "without a sign-in account" in body["reason"]
    assert _templates(store) == 0
    with store.container.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(BiometricConsent)) == 0

    code = store.enrolment_code(ann)
    r = c.post(f"/shoppers/{ann}/palms", files=_files(store, 1),
               data={**form, "enrolment_code": code})
    assert r.status_code == 201, r.text
    with store.container.db() as db:
        recorded_by = db.scalar(sa.select(BiometricConsent.recorded_by)
                                .where(BiometricConsent.shopper_id == ann))
    assert recorded_by is not None and recorded_by.startswith("staff:")
    # Used once: the same code again is refused, nothing more stored.
    held = _templates(store)
    store.error_of(c.post(f"/shoppers/{ann}/palms", files=_files(store, 2),
                          data={**form, "enrolment_code": code}), 403)
    assert _templates(store) == held
    # A gate does not take it either.
    gate = c.post("/gates/entry/code", json={"code": code})
    assert gate.status_code == 200 and gate.json()["admitted"] is False


def test_wrong_enrolment_codes_are_rate_limited(make_store: Any) -> None:
    store = make_store()
    ann = store.register("Ann")
    statuses = [store.client.post(f"/shoppers/{ann}/palms", files=_files(store, 3),
                                  data={"enrolment_code": f"WRONG{i:05d}"}).status_code
                for i in range(11)]
    assert statuses[:10] == [403] * 10 and statuses[10] == 429
    limited = store.client.post(f"/shoppers/{ann}/palms", files=_files(store, 3),
                                data={"enrolment_code": store.enrolment_code(ann)})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert _templates(store) == 0
