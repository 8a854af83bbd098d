"""Data-subject requests over HTTP for a shopper registered by staff (no login): a manager
exports (zip, not stored) or erases their data; other roles and no token are refused,
malformed ids get 422, an open trip blocks erasure (409), and both are audited."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
import sqlalchemy as sa

from storefront.db.models import PrivacyExport, Receipt, Shopper

EXPORT = "/staff/privacy/shoppers/{sid}/export"
DELETE = "/staff/privacy/shoppers/{sid}"


def _walk_in(store: Any) -> str:
    r = store.client.post("/shoppers", json={"display_name": "Walk In",
                                             "payment_token": "tok_walkin"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _check(store: Any) -> None:
    sid, manager = _walk_in(store), store.client.auth.default_staff
    r = store.client.post(EXPORT.format(sid=sid))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    data = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("data.json"))
    assert data["shopper_id"] == sid
    assert data["tables"]["shoppers"][0]["display_name"] == "Walk In"
    with store.container.db() as db:  # handed over, never kept
        assert db.scalar(sa.select(sa.func.count()).select_from(PrivacyExport)) == 0
    open_trip = store.container.gates.open_session(shopper_id=sid, entry_method="app")
    assert "not settled" in store.error_of(store.client.delete(DELETE.format(sid=sid)),
                                           409)["reason"]
    store.container.checkout.exit(open_trip)
    r = store.client.delete(DELETE.format(sid=sid))
    assert r.status_code == 200, r.text
    assert r.json()["what"] == "account" and r.json()["deleted"]["shoppers"] == 1
    assert r.json()["kept_anonymised"]["receipts"] == 1
    with store.container.db() as db:
        assert db.get(Shopper, sid) is None
        assert db.scalar(sa.select(sa.func.count()).select_from(Receipt)
                         .where(Receipt.shopper_id == sid)) == 0
    store.error_of(store.client.delete(DELETE.format(sid=sid)), 404)
    store.error_of(store.client.post(EXPORT.format(sid=sid)), 404)
    entries = store.container.audit.entries(subject=f"shopper:{sid}")
    assert [(e.action, e.actor) for e in entries if e.action == "export"] == [
        ("export", f"staff:{manager}")]
    assert {e.actor for e in entries if e.action == "delete"} == {f"staff:{manager}"}


def test_a_manager_exports_and_erases_a_shopper_without_login(make_store: Any) -> None:
    _check(make_store())


@pytest.mark.postgres
def test_the_same_on_postgres(migrated_postgres_url: str, make_store: Any) -> None:
    _check(make_store(database_url=migrated_postgres_url))


def test_only_managers_and_only_well_formed_ids(make_store: Any) -> None:
    store = make_store()
    sid = _walk_in(store)
    store.client.auth.roles["cashier-1"] = "cashier"
    cashier = {"Authorization": f"Bearer {store.client.auth.token('cashier-1')}"}
    for method, path in (("POST", EXPORT), ("DELETE", DELETE)):
        url = path.format(sid=sid)
        store.error_of(store.client.request(method, url, headers=cashier), 403)
        store.error_of(store.client.request(method, url,
                                            headers={"Authorization": "Bearer nope"}), 401)
        for bad in ("a b", "x" * 65, "shp_%00", "shp;drop", "shp%E2%80%AE"):
            store.error_of(store.client.request(method, path.format(sid=bad)), 422)
    assert store.client.get(EXPORT.format(sid=sid)).status_code == 405
    with store.container.db() as db:
        assert db.get(Shopper, sid) is not None  # nothing refused changed anything
    assert [e for e in store.container.audit.entries(subject=f"shopper:{sid}")
            if e.action in ("export", "delete")] == []


def test_a_shopper_with_a_login_is_refused(make_store: Any) -> None:
    """Least privilege: a portal user exports and deletes in the portal; a manager gets
    409 ``shopper_has_login`` for both, and nothing is exported, erased or audited."""
    store = make_store()
    r = store.client.post("/auth/signup", json={
        "email": "portal@example.org", "password": "correct horse battery staple",
        "display_name": "Portal User", "payment_token": "tok_portal"})
    assert r.status_code == 201, r.text
    sid = str(r.json()["shopper_id"])
    for method, path in (("POST", EXPORT), ("DELETE", DELETE)):
        body = store.error_of(store.client.request(method, path.format(sid=sid)), 409)
        assert body["error"] == "shopper_has_login" and "portal" in body["reason"]
    with store.container.db() as db:
        assert db.get(Shopper, sid) is not None
    assert [e for e in store.container.audit.entries(subject=f"shopper:{sid}")
            if e.action in ("export", "delete")] == []
