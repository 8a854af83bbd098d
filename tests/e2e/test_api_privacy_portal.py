"""The privacy portal over HTTP with two shoppers: each sees and changes only their own data,
every ``/me`` endpoint needs a valid token, and malformed input gets a 4xx with the reason."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.privacy.wiring import build_privacy
from storefront.settings import Settings

PALMS = SyntheticPalms(4242)
PASSWORD = "correct horse battery"


class CountingHasher(PasswordHasher):
    """argon2 at a test cost that counts verifications (timing-safety check)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.verified += 1
        return super().verify(hash, password)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[dict[str, Any]]:
    clock, hasher = Clock(), CountingHasher()
    container = bootstrap(Settings(data_dir=tmp_path / "store"), clock=clock,
                          processor=SimulatedProcessor(seed=5, decline_rate=0.0))
    container.catalogue.upsert([make_item("APPLE-1", "Apple", 35, "GBP")])
    app = create_app(container)
    app.state.privacy = build_privacy(container, clock=clock, hasher=hasher)
    with TestClient(app) as client:
        people = {name: _person(client, container, clock, name, palm)
                  for name, palm in (("ann", 0), ("bob", 1))}
        yield {"client": client, "c": container, "clock": clock, "hasher": hasher, **people}
    container.close()


def _person(client: TestClient, c: Container, clock: Clock, name: str,
            palm: int) -> dict[str, Any]:
    r = client.post("/auth/signup", json={"email": f"{name}@example.org", "password": PASSWORD,
                                          "display_name": name.title(),
                                          "payment_token": f"tok_{name}"})
    assert r.status_code == 201, r.text
    shopper = r.json()["shopper_id"]
    token = _login(client, name)
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/me/consents", headers=auth,
                    json={"purpose": "palm_identification", "text_version": "2026-11"})
    assert r.status_code == 201, r.text
    c.shoppers.enrol_palm(shopper_id=shopper, images=[png(palm, k) for k in range(4)])
    entry = c.gates.enter_by_palm(image=png(palm, 5))
    assert entry.shopper_id == shopper and entry.session_id
    c.ingest.record(session_id=entry.session_id, kind="picked", product_code="APPLE-1",
                    quantity=2, device_id=f"cart-{name}", device_seq=1,
                    sensor_time=clock.now - timedelta(seconds=5))
    receipt = c.checkout.exit(entry.session_id).receipt_id
    palm_id = client.get("/me/palms", headers=auth).json()[0]["id"]
    export = client.post("/me/exports", headers=auth).json()["id"]
    return {"id": shopper, "auth": auth, "receipt": receipt, "palm": palm_id, "export": export}


def _login(client: TestClient, name: str, **extra: Any) -> str:
    r = client.post("/auth/login", json={"email": f"{name}@example.org", "password": PASSWORD,
                                         **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_each_shopper_sees_only_their_own_data(portal: dict[str, Any]) -> None:
    client, ann, bob = portal["client"], portal["ann"], portal["bob"]
    for me, other in ((ann, bob), (bob, ann)):
        h = me["auth"]
        assert client.get("/me", headers=h).json()["id"] == me["id"]
        palms = client.get("/me/palms", headers=h).json()
        assert [p["id"] for p in palms] == [me["palm"]] and palms[0]["last_used_at"]
        assert not any("template" in key and key != "templates" for key in palms[0])
        trips = client.get("/me/trips", headers=h).json()
        assert [t["receipt_id"] for t in trips] == [me["receipt"]]
        assert client.get(f"/me/receipts/{me['receipt']}", headers=h).json()["total_minor"] == 70
        devices = client.get("/me/devices", headers=h).json()
        name = "ann" if me is ann else "bob"
        assert [d["device_id"] for d in devices] == [f"cart-{name}"]
        consents = client.get("/me/consents", headers=h).json()["records"]
        assert len(consents) == 1 and consents[0]["text_version"] == "2026-11"
        assert client.get(f"/me/exports/{me['export']}", headers=h).json()["state"] == "ready"
        # Another shopper's ids answer 404, exactly like ids that do not exist.
        for path in (f"/me/receipts/{other['receipt']}", f"/me/exports/{other['export']}",
                     f"/me/exports/{other['export']}/download"):
            assert client.get(path, headers=h).status_code == 404, path
        assert client.delete(f"/me/palms/{other['palm']}", headers=h).status_code == 404
    archive = zipfile.ZipFile(io.BytesIO(client.get(
        f"/me/exports/{ann['export']}/download", headers=ann["auth"]).content))
    data = json.loads(archive.read("data.json"))
    assert data["shopper_id"] == ann["id"] and bob["id"] not in json.dumps(data)
    assert {e["action"] for e in data["tables"]["audit_log"]} >= {"enrol"}


def test_changes_by_one_shopper_leave_the_other_untouched(portal: dict[str, Any]) -> None:
    client, c, ann, bob = portal["client"], portal["c"], portal["ann"], portal["bob"]
    h = ann["auth"]
    assert client.put("/me/choices/recommendations", headers=h,
                      json={"opt_out": True}).json()["recommendations_opt_out"] is True
    r = client.put("/me/retention", headers=h, json={"palm_retention_days": 90,
                                                     "trip_retention_days": 400})
    assert r.json()["trip_retention_days"] == 400
    privacy = client.app.state.privacy  # type: ignore[attr-defined]
    assert not privacy.consents.may_use_for_recommendations(ann["id"])
    assert privacy.consents.may_use_for_recommendations(bob["id"])
    assert client.get("/me/choices", headers=bob["auth"]).json() == {
        "recommendations_opt_out": False, "palm_retention_days": 730, "trip_retention_days": None}
    confirmation = client.delete(f"/me/palms/{ann['palm']}", headers=h).json()
    # ann's stored export lists the palm: deleted with it (its download now answers 410)
    assert confirmation["deleted"] == {"palms": 1, "templates": 4, "exports": 1}
    assert client.get(f"/me/exports/{ann['export']}/download", headers=h).status_code == 410
    assert not c.gates.enter_by_palm(image=png(0, 6)).admitted
    assert c.gates.enter_by_palm(image=png(1, 6)).shopper_id == bob["id"]
    actions = {e.action for e in c.audit.entries(subject=f"shopper:{ann['id']}")}
    assert {"enrol", "export", "delete"} <= actions
    assert client.delete("/me/consents/palm_identification", headers=h).json()["withdrawn"] == 1
    assert client.get("/me/consents", headers=bob["auth"]).json()["records"][0][
        "withdrawn_at"] is None
    gone = client.delete("/me", headers=h).json()
    assert gone["what"] == "account" and gone["kept_anonymised"]["receipts"] == 1
    assert client.get("/me", headers=h).status_code == 401
    assert client.get("/me", headers=bob["auth"]).json()["id"] == bob["id"]
    assert client.get(f"/me/receipts/{bob['receipt']}", headers=bob["auth"]).status_code == 200
    r = client.post("/auth/login", json={"email": "ann@example.org", "password": PASSWORD})
    assert r.status_code == 401


def test_every_me_endpoint_needs_a_valid_token(portal: dict[str, Any]) -> None:
    client, clock = portal["client"], portal["clock"]
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = [(path.replace("{palm_id}", "x").replace("{receipt_id}", "x")
               .replace("{export_id}", "x"), method)
              for path, methods in paths.items() if path.startswith("/me")
              for method in methods]
    assert len(routes) >= 16
    for path, method in routes:
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        {"Authorization": "Basic YW5uOnB3"}):
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.text)
    clock.now += timedelta(hours=13)  # session tokens live 12 hours
    assert client.get("/me", headers=portal["ann"]["auth"]).status_code == 401
    clock.now -= timedelta(hours=13)
    token = _login(client, "bob")
    assert client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}
                       ).status_code == 204
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_login_is_rate_limited_and_timing_safe(portal: dict[str, Any]) -> None:
    client, hasher = portal["client"], portal["hasher"]
    before = hasher.verified
    unknown = client.post("/auth/login", json={"email": "nobody@example.org",
                                               "password": PASSWORD})
    wrong = client.post("/auth/login", json={"email": "ann@example.org", "password": "x" * 12})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    assert hasher.verified - before == 2  # the unknown account costs one argon2 check too
    for _ in range(4):  # five failures in all: the account's limit
        client.post("/auth/login", json={"email": "ann@example.org", "password": "y" * 12})
    limited = client.post("/auth/login", json={"email": "ann@example.org",
                                               "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    _login(client, "bob")  # another account from the same address still works
    for n in range(16):
        client.post("/auth/login", json={"email": f"guess{n}@example.org",
                                         "password": PASSWORD})
    assert client.post("/auth/login", json={"email": "bob@example.org",
                                            "password": PASSWORD}).status_code == 429


def test_totp_second_factor(portal: dict[str, Any]) -> None:
    client, h = portal["client"], portal["bob"]["auth"]
    uri = client.post("/auth/totp/enrol", headers=h).json()["provisioning_uri"]
    totp = pyotp.parse_uri(uri)
    assert client.post("/auth/totp/verify", headers=h, json={"code": "000000" if totp.now()
                                                             != "000000" else "111111"}
                       ).status_code == 401
    code = totp.now()
    assert client.post("/auth/totp/verify", headers=h, json={"code": code}).json() == {
        "totp_enabled": True, "sessions_ended": 0}
    assert client.post("/auth/login", json={"email": "bob@example.org", "password": PASSWORD}
                       ).status_code == 401
    # the code that turned TOTP on is used up; the next step's code signs in
    assert client.post("/auth/login", json={"email": "bob@example.org", "password": PASSWORD,
                                            "totp_code": code}).status_code == 401
    _login(client, "bob", totp_code=totp.at(time.time() + 30))
    assert client.get("/me", headers=h).json()["totp_enabled"] is True


@pytest.mark.parametrize(("method", "path", "body", "where"), [
    ("post", "/auth/signup", {"email": "not-an-address", "password": PASSWORD,
                              "display_name": "X", "payment_token": "tok_x"}, "e-mail"),
    ("post", "/auth/signup", {"email": "x@example.org", "password": "short",
                              "display_name": "X", "payment_token": "tok_x"}, "password"),
    ("post", "/auth/signup", {"email": "x@example.org", "password": PASSWORD,
                              "display_name": "X", "payment_token": "4111111111111111"},
     "card number"),
    ("post", "/auth/signup", {"email": "x@example.org", "password": PASSWORD,
                              "display_name": "X", "payment_token": "t", "admin": True},
     "admin"),
    ("post", "/auth/login", {"email": "ann@example.org", "password": PASSWORD,
                             "totp_code": "12ab56"}, "totp_code"),
    ("put", "/me/retention", {"palm_retention_days": 0}, "palm_retention_days"),
    ("put", "/me/retention", {"palm_retention_days": "30"}, "palm_retention_days"),
    ("put", "/me/choices/recommendations", {"opt_out": "yes"}, "opt_out"),
    ("post", "/me/consents", {"purpose": "palm_identification", "text_version": "1999"},
     "text version"),
    ("post", "/me/consents", {"purpose": "marketing", "text_version": "2026-11"}, "purpose"),
])
def test_malformed_input_is_refused_with_the_reason(portal: dict[str, Any], method: str,
                                                    path: str, body: Any, where: str) -> None:
    r = portal["client"].request(method.upper(), path, json=body,
                                 headers=portal["ann"]["auth"])
    assert r.status_code == 422, r.text
    assert where in r.json()["reason"]


def test_duplicate_sign_up_and_enrolment_without_consent(portal: dict[str, Any]) -> None:
    client, c = portal["client"], portal["c"]
    r = client.post("/auth/signup", json={"email": "ANN@example.org ", "password": PASSWORD,
                                          "display_name": "Ann 2", "payment_token": "tok_2"})
    assert r.status_code == 409 and "already exists" in r.json()["reason"]
    client.delete("/me/consents/palm_identification", headers=portal["bob"]["auth"])
    assert client.get("/me/palms", headers=portal["bob"]["auth"]).json() == []
    from storefront.privacy.consent import ConsentRequired

    with pytest.raises(ConsentRequired):
        c.shoppers.enrol_palm(shopper_id=portal["bob"]["id"], images=[png(1, 0)])
