"""Staff account changes over the API (admins only): disable and enable, password and TOTP
resets, role changes; each audited without secrets, each (but enabling) revoking the
member's tokens; a disabled member's token is refused on every staff route, API and
console; malformed requests are refused with the reason."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.db.models import StaffAccount
from storefront.security.api import staff_principal

PASSWORD = "correct horse battery"


def _bare(store: Any) -> TestClient:
    client = TestClient(create_app(store.container), follow_redirects=False)
    client.__enter__()
    return client


def _login(client: TestClient, staff_id: str, password: str = PASSWORD,
           totp: str | None = None) -> Any:
    body = {"staff_id": staff_id, "password": password} | ({"totp": totp} if totp else {})
    return client.post("/staff/login", json=body)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(make_store: Any) -> tuple[Any, TestClient, dict[str, str]]:
    """A store, a client without credentials and the headers of the admin ``ada``."""
    store = make_store()
    return store, _bare(store), _auth(store.client.auth.token("ada"))


def _staff_routes(app: Any) -> list[APIRoute]:
    """The API routes that authenticate a staff token (directly or as staff-or-device)."""

    def uses_staff(dependant: Any) -> bool:
        return any(d.call is staff_principal
                   or "staff_or_device" in getattr(d.call, "__qualname__", "")
                   or uses_staff(d) for d in dependant.dependencies)

    def walk(routes: list[Any]) -> list[APIRoute]:  # included routers nest (FastAPI 0.16x)
        found: list[APIRoute] = []
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                found += walk(inner.routes)
            elif isinstance(route, APIRoute):
                found.append(route)
        return found

    return [r for r in walk(app.routes) if uses_staff(r.dependant)]


def _refused_everywhere(store: Any, client: TestClient, token: str) -> int:
    """Call every staff route with ``token``; assert each answers 401; return how many."""
    routes = _staff_routes(client.app)
    for route in routes:
        path = route.path_format
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", "x1")
        for method in route.methods:
            answer = client.request(method, path, headers=_auth(token), json={})
            store.error_of(answer, 401)
    return len(routes)


def test_a_disabled_member_is_refused_on_every_staff_route_at_once(admin: Any) -> None:
    store, client, ada = admin
    staff = store.container.security.staff
    staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    token = _login(client, "cal").json()["token"]
    assert client.get("/staff/queue", headers=_auth(token)).status_code == 200
    done = client.post("/staff/accounts/cal/disable", headers=ada)
    assert done.status_code == 200, done.text
    assert done.json() == {"staff_id": "cal", "role": "cashier", "disabled": True,
                          "changed": True, "tokens_revoked": 1, "totp_secret": None,
                          "totp_uri": None}
    assert _refused_everywhere(store, client, token) >= 20
    store.error_of(_login(client, "cal"), 401)
    again = client.post("/staff/accounts/cal/disable", headers=ada).json()
    assert again["changed"] is False and again["tokens_revoked"] == 0
    assert client.post("/staff/accounts/cal/enable", headers=ada).json()["disabled"] is False
    fresh = _login(client, "cal")
    assert fresh.status_code == 200
    assert client.get("/staff/queue", headers=_auth(fresh.json()["token"])).status_code == 200
    store.error_of(client.get("/staff/queue", headers=_auth(token)), 401)  # stays revoked


def test_the_token_check_itself_looks_at_disabled_at(admin: Any) -> None:
    """A token left unrevoked (an account disabled by hand in the database) is refused
    too, on the API and in the console."""
    store, client, _ada = admin
    made = store.container.security.staff.add(staff_id="mia", role="manager",
                                               password=PASSWORD)
    token = _login(client, "mia", totp=pyotp.TOTP(made.totp_secret or "").now()).json()["token"]
    console = TestClient(client.app, follow_redirects=False)
    console.cookies.set("sf_staff", token, path="/console")
    assert console.get("/console").status_code == 200
    with store.container.db.begin() as db:
        db.execute(sa.update(StaffAccount).where(StaffAccount.id == "mia")
                   .values(disabled_at=datetime.now(UTC)))
    _refused_everywhere(store, client, token)
    r = console.get("/console")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_disabling_signs_a_console_session_out(admin: Any) -> None:
    store, client, ada = admin
    store.container.security.staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    console = TestClient(client.app, follow_redirects=False)
    r = console.post("/console/login", data={"staff_id": "cal", "password": PASSWORD,
                                              "next": "/console"})
    assert r.status_code == 303 and r.headers["location"] == "/console"
    assert console.get("/console").status_code == 200
    assert client.post("/staff/accounts/cal/disable", headers=ada).json()["tokens_revoked"] == 1
    r = console.get("/console")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_password_reset_revokes_and_replaces_the_old_password(admin: Any) -> None:
    store, client, ada = admin
    store.container.security.staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    token = _login(client, "cal").json()["token"]
    new = "a brand new passphrase"
    r = client.post("/staff/accounts/cal/password", headers=ada, json={"password": new})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1
    assert new not in r.text
    store.error_of(client.get("/staff/me", headers=_auth(token)), 401)
    store.error_of(_login(client, "cal"), 401)
    assert _login(client, "cal", new).status_code == 200


def test_totp_reset_issues_a_new_secret_once(admin: Any) -> None:
    store, client, ada = admin
    old = store.container.security.staff.add(staff_id="mia", role="manager",
                                              password=PASSWORD).totp_secret or ""
    token = _login(client, "mia", totp=pyotp.TOTP(old).now()).json()["token"]
    r = client.post("/staff/accounts/mia/totp", headers=ada)
    assert r.status_code == 200, r.text
    body = r.json()
    secret = body["totp_secret"]
    assert secret and secret != old and body["totp_uri"].startswith("otpauth://")
    assert body["tokens_revoked"] == 1
    store.error_of(client.get("/staff/me", headers=_auth(token)), 401)
    later = time.time() + 30  # the next step: the old secret's code of this step was used
    store.error_of(_login(client, "mia", totp=pyotp.TOTP(old).at(later)), 401)
    assert _login(client, "mia", totp=pyotp.TOTP(secret).now()).status_code == 200
    entries = store.client.get("/audit/entries", params={"subject": "staff:mia"}).json()
    assert [e["details"] for e in entries] == [{"change": "totp_reset", "tokens_revoked": 1}]
    assert entries[0]["actor"] == "staff:ada" and entries[0]["action"] == "staff_changed"
    assert secret not in json.dumps(entries) and old not in json.dumps(entries)


def test_role_changes_follow_the_totp_rule(admin: Any) -> None:
    store, client, ada = admin
    store.container.security.staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    token = _login(client, "cal").json()["token"]
    up = client.put("/staff/accounts/cal/role", headers=ada, json={"role": "manager"}).json()
    assert up["role"] == "manager" and up["tokens_revoked"] == 1 and up["totp_secret"]
    store.error_of(client.get("/staff/queue", headers=_auth(token)), 401)
    store.error_of(_login(client, "cal"), 401)  # a manager needs the code now
    mgr = _login(client, "cal", totp=pyotp.TOTP(up["totp_secret"]).now())
    assert mgr.status_code == 200 and mgr.json()["role"] == "manager"
    same = client.put("/staff/accounts/cal/role", headers=ada, json={"role": "manager"}).json()
    assert same["changed"] is False and same["tokens_revoked"] == 0
    down = client.put("/staff/accounts/cal/role", headers=ada, json={"role": "auditor"}).json()
    assert down["totp_secret"] is None and down["tokens_revoked"] == 1
    assert _login(client, "cal").json()["role"] == "auditor"
    details = [e["details"] for e in store.client.get(
        "/audit/entries", params={"subject": "staff:cal"}).json()]
    assert details == [
        {"change": "role", "from": "cashier", "to": "manager", "totp_issued": True,
         "tokens_revoked": 1},
        {"change": "role", "from": "manager", "to": "auditor", "totp_issued": False,
         "tokens_revoked": 1}]


def test_the_last_enabled_admin_stays(admin: Any) -> None:
    store, client, ada = admin
    accounts = store.container.security.staff_admin
    made = client.post("/staff/accounts", headers=ada, json={
        "staff_id": "ben", "role": "admin", "password": PASSWORD}).json()
    ben = _auth(_login(client, "ben", totp=pyotp.TOTP(made["totp_secret"]).now())
                .json()["token"])
    assert client.post("/staff/accounts/ada/disable", headers=ben).status_code == 200
    from storefront.errors import Conflict

    with pytest.raises(Conflict, match="last enabled admin"):
        accounts.disable(actor="cli", staff_id="ben")
    with pytest.raises(Conflict, match="last enabled admin"):
        accounts.change_role(actor="cli", staff_id="ben", role="manager")
    accounts.enable(actor="cli", staff_id="ada")
    assert accounts.change_role(actor="cli", staff_id="ben", role="manager").role == "manager"
    assert [v.staff_id for v in accounts.accounts() if v.role == "admin"] == ["ada"]


MALFORMED = [
    ("post", "/staff/accounts/nobody/disable", None, 404, "no staff account"),
    ("post", "/staff/accounts/nobody/enable", None, 404, "no staff account"),
    ("post", "/staff/accounts/nobody/totp", None, 404, "no staff account"),
    ("post", "/staff/accounts/nobody/password", {"password": PASSWORD}, 404, "no staff"),
    ("put", "/staff/accounts/nobody/role", {"role": "cashier"}, 404, "no staff account"),
    ("post", "/staff/accounts/ada/disable", None, 409, "your own account"),
    ("put", "/staff/accounts/ada/role", {"role": "manager"}, 409, "your own account"),
    ("put", "/staff/accounts/cal/role", {"role": "janitor"}, 422, "is not one of"),
    ("put", "/staff/accounts/cal/role", {"role": ""}, 422, "role"),
    ("put", "/staff/accounts/cal/role", {}, 422, "role"),
    ("put", "/staff/accounts/cal/role", {"role": "admin", "totp": "1"}, 422, "totp"),
    ("post", "/staff/accounts/cal/password", {"password": "short"}, 422, "password"),
    ("post", "/staff/accounts/cal/password", {"password": 123456789012345}, 422, "password"),
    ("post", "/staff/accounts/cal/totp", None, 409, "without a one-time code"),
    ("post", "/staff/accounts/a%20b/disable", None, 422, "staff_id"),
    ("post", f"/staff/accounts/{'x' * 65}/disable", None, 422, "staff_id"),
]


def test_malformed_or_impossible_changes_are_refused(admin: Any) -> None:
    store, client, ada = admin
    store.container.security.staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    for method, path, body, status, reason in MALFORMED:
        answer = client.request(method.upper(), path, headers=ada, json=body)
        assert reason in store.error_of(answer, status)["reason"], (path, body)
    assert _login(client, "cal").status_code == 200  # nothing changed
    assert client.get("/staff/me", headers=ada).json() == {"id": "ada", "role": "admin"}
    assert store.client.get("/audit/entries", params={"subject": "staff:cal"}).json() == []
    assert store.client.get("/audit/entries", params={"subject": "staff:ada"}).json() == []


def test_only_admins_change_accounts(admin: Any) -> None:
    store, client, _ada = admin
    store.container.security.staff.add(staff_id="cal", role="cashier", password=PASSWORD)
    cal = _auth(_login(client, "cal").json()["token"])
    for method, path, body in (("post", "/staff/accounts/cal/disable", None),
                               ("put", "/staff/accounts/cal/role", {"role": "admin"}),
                               ("post", "/staff/accounts/cal/password",
                                {"password": "x" * 12}),
                               ("get", "/staff/accounts", None)):
        store.error_of(client.request(method.upper(), path, headers=cal, json=body), 403)
        store.error_of(client.request(method.upper(), path, json=body), 401)
    assert client.get("/staff/queue", headers=cal).status_code == 200
