"""Security of the API: staff roles and limits, TOTP, device signatures, the audit chain."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import sqlalchemy as sa
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.db.models import AuditEntry
from storefront.security.devices_http import sign_headers


def _bare(store: Any) -> TestClient:
    client = TestClient(create_app(store.container))
    client.__enter__()
    return client


def _login(client: TestClient, staff_id: str, password: str, totp: str | None = None) -> Any:
    body = {"staff_id": staff_id, "password": password}
    if totp is not None:
        body["totp"] = totp
    return client.post("/staff/login", json=body)


def test_totp_required_for_manager_and_admin_not_cashier(make_store: Any) -> None:
    store = make_store()
    staff, client = store.container.security.staff, _bare(store)
    mgr = staff.add(staff_id="mia", role="manager", password="correct horse battery")
    cash = staff.add(staff_id="cal", role="cashier", password="correct horse battery")
    assert mgr.totp_secret and mgr.totp_uri and cash.totp_secret is None
    assert _login(client, "mia", "correct horse battery").status_code == 401
    assert _login(client, "mia", "correct horse battery", "000000").status_code in (401,)
    assert _login(client, "mia", "wrong password here", pyotp.TOTP(mgr.totp_secret).now()
                  ).status_code == 401
    ok = _login(client, "mia", "correct horse battery", pyotp.TOTP(mgr.totp_secret).now())
    assert ok.status_code == 200 and ok.json()["role"] == "manager"
    assert _login(client, "cal", "correct horse battery").status_code == 200
    assert _login(client, "nobody", "correct horse battery").status_code == 401


def test_cashier_cannot_open_admin_or_manager_endpoints(make_store: Any) -> None:
    store = make_store()
    staff, client = store.container.security.staff, _bare(store)
    staff.add(staff_id="cal", role="cashier", password="correct horse battery")
    token = _login(client, "cal", "correct horse battery").json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    product = {"code": "X1", "name": "x", "unit_price_minor": 10}
    store.error_of(client.put("/products/X1", json=product, headers=auth), 403)
    store.error_of(client.get("/audit/verify", headers=auth), 403)
    store.error_of(client.post("/staff/accounts", headers=auth, json={
        "staff_id": "evil", "role": "admin", "password": "x" * 12}), 403)
    store.error_of(client.post("/staff/tills/t1/z-report", headers=auth,
                               json={"staff_id": "cal", "counted_minor": 0}), 403)
    assert client.get("/staff/queue", headers=auth).status_code == 200
    # a cashier cannot act as another staff member
    store.error_of(client.post("/staff/tills/t1/open", headers=auth,
                               json={"staff_id": "ann", "float_minor": 0}), 403)
    # no token, bad token
    store.error_of(client.get("/staff/queue"), 401)
    store.error_of(client.get("/staff/queue", headers={"Authorization": "Bearer nope"}), 401)
    client.post("/staff/logout", headers=auth)
    store.error_of(client.get("/staff/queue", headers=auth), 401)


def test_unsigned_stale_replayed_and_foreign_device_requests_refused(make_store: Any) -> None:
    store = make_store()
    client = _bare(store)
    registry = store.container.security.registry
    key = registry.add(store_id=store.container.settings.store_id, device_id="cart-9",
                       kind="cart")
    path = "/sessions/ses_x/events"
    body = b'{"kind":"picked","product_code":"A","quantity":1,"device_id":"cart-9",' \
           b'"device_seq":1,"sensor_time":"2026-03-02T09:00:00+00:00","confidence":1.0}'
    json_type = {"content-type": "application/json"}
    store.error_of(client.post(path, content=body, headers=json_type), 401)
    now = int(time.time() * 1000)
    stale = sign_headers(key, device_id="cart-9", method="POST", path=path, query="",
                         body=body, ts_ms=now - 600_000)
    assert "stale" in store.error_of(client.post(path, content=body,
                                                 headers={**stale, **json_type}), 401)["reason"]
    fresh = sign_headers(key, device_id="cart-9", method="POST", path=path, query="",
                         body=body, ts_ms=now)
    first = client.post(path, content=body, headers={**fresh, **json_type})
    assert first.status_code in (404, 422)  # authenticated; then judged on its content
    assert "replayed" in store.error_of(client.post(path, content=body,
                                                    headers={**fresh, **json_type}),
                                        401)["reason"]
    tampered = body.replace(b'"quantity":1', b'"quantity":9')
    again = sign_headers(key, device_id="cart-9", method="POST", path=path, query="",
                         body=body, ts_ms=now)
    store.error_of(client.post(path, content=tampered, headers={**again, **json_type}), 401)
    # a cart cannot send events in another device's name, nor open the gate
    other = body.replace(b"cart-9", b"cart-8")
    signed = sign_headers(key, device_id="cart-9", method="POST", path=path, query="",
                          body=other, ts_ms=now)
    store.error_of(client.post(path, content=other, headers={**signed, **json_type}), 403)
    gate = sign_headers(key, device_id="cart-9", method="POST", path="/sessions/s/exit",
                        query="", body=b"", ts_ms=now)
    store.error_of(client.post("/sessions/s/exit", headers=gate), 403)


def test_refund_limits_and_audit_chain(make_store: Any) -> None:
    store = make_store()
    store.add_products()
    access = store.client.auth
    access.roles.update({"cal": "cashier"})
    shopper = store.register("Ann")
    store.enrol(shopper, 1)
    entry = store.enter(store.palm_png(1, store.PROBE_CAPTURE))
    sid = entry["session_id"]
    for seq in range(30):
        assert store.send(sid, store.event("picked", "COFFEE.250", 1, "cart-1", seq,
                                           seq)).status_code == 201
    exit_ = store.client.post(f"/sessions/{sid}/exit").json()
    receipt = exit_["receipt_id"]
    dispute = {"dispute_key": "d1", "product_code": "COFFEE.250", "quantity": 10,
               "reason": "damaged"}
    denied = store.client.post(f"/receipts/{receipt}/disputes",
                               headers={"Authorization": f"Bearer {access.token('cal')}"},
                               json=dispute)
    assert "limit" in store.error_of(denied, 403)["reason"]
    assert store.client.post(f"/receipts/{receipt}/disputes", json=dispute).status_code == 201
    audit = store.container.audit
    actions = [e.action for e in audit.entries(limit=1000)]
    assert {"enrol", "identify", "refund"} <= set(actions)
    verdict = store.client.get("/audit/verify").json()
    assert verdict["ok"] and verdict["checked"] == len(actions)
    db = store.container.db
    original = audit.entries(limit=2)[1].actor
    with db.begin() as s:  # edit one entry
        s.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(actor="someone"))
    bad = audit.verify()
    assert not bad.ok and bad.first_bad_seq == 2
    with db.begin() as s:  # put it back, then delete one
        s.execute(sa.update(AuditEntry).where(AuditEntry.seq == 2).values(actor=original))
    assert audit.verify().ok
    with db.begin() as s:
        s.execute(sa.delete(AuditEntry).where(AuditEntry.seq == 2))
    assert audit.verify().first_bad_seq == 2


def test_refund_limit_covers_the_receipt_so_splitting_does_not_get_round_it(
        make_store: Any) -> None:
    """A cashier (limit 20.00) refunds 4 x 4.25 = 17.00, then 1 more (4.25) is refused:
    the limit covers every refund of the receipt; a manager may still refund it."""
    store = make_store()
    store.add_products()
    store.client.auth.roles.update({"cal": "cashier"})
    shopper = store.register("Ann")
    store.enrol(shopper, 1)
    sid = store.enter(store.palm_png(1, store.PROBE_CAPTURE))["session_id"]
    for seq in range(6):
        assert store.send(sid, store.event("picked", "COFFEE.250", 1, "cart-1", seq,
                                           seq)).status_code == 201
    receipt = store.client.post(f"/sessions/{sid}/exit").json()["receipt_id"]
    cashier = {"Authorization": f"Bearer {store.client.auth.token('cal')}"}

    def dispute(key: str, quantity: int, headers: dict[str, str] | None = None) -> Any:
        return store.client.post(f"/receipts/{receipt}/disputes", headers=headers, json={
            "dispute_key": key, "product_code": "COFFEE.250", "quantity": quantity,
            "reason": "damaged"})

    assert dispute("c1", 4, cashier).status_code == 201
    refused = store.error_of(dispute("c2", 1, cashier), 403)["reason"]
    assert "17.00 GBP refunded on this receipt before" in refused
    assert "over your limit of 20.00 GBP" in refused
    assert dispute("m1", 1).status_code == 201  # the manager's limit is higher


def test_audit_reorder_and_tail_removal_detected(make_store: Any) -> None:
    store = make_store()
    audit, db = store.container.audit, store.container.db
    for i in range(4):
        audit.record(actor="staff:x", action="export", subject=f"shopper:{i}", details={"i": i})
    assert audit.verify().ok
    with db.begin() as s:  # swap the contents of entries 2 and 3
        rows = {r.seq: r for r in s.scalars(sa.select(AuditEntry))}
        a, b = rows[2], rows[3]
        a.subject, b.subject = b.subject, a.subject
    assert audit.verify().first_bad_seq == 2
    with db.begin() as s:
        rows = {r.seq: r for r in s.scalars(sa.select(AuditEntry))}
        rows[2].subject, rows[3].subject = rows[3].subject, rows[2].subject
        s.delete(rows[4])
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 4


def test_security_headers(make_store: Any) -> None:
    store = make_store()
    r = store.client.get("/staff/queue")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers
    https = TestClient(create_app(store.container), base_url="https://testserver")
    assert "max-age" in https.get("/health").headers["strict-transport-security"]
