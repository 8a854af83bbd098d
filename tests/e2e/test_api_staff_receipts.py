"""Receipts over HTTP (JSON, plain text, HTML; names in any script, hostile names escaped)
and disputes (refund through the processor once per key, amended receipt kept apart)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

HOSTILE = "<script>alert(1)</script> & co"
HEBREW = "חלב תנובה 3%"


class RefundLog:
    """The simulated processor, with every refund that reached it logged."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        self.inner = inner
        self.refunds: list[tuple[str, int, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def refund(self, *, capture_id: str, amount_minor: int, idempotency_key: str) -> Any:
        self.refunds.append((capture_id, amount_minor, idempotency_key))
        return self.inner.refund(capture_id=capture_id, amount_minor=amount_minor,
                                 idempotency_key=idempotency_key)


@pytest.fixture
def paid(tmp_path: Path) -> Iterator[tuple[TestClient, Container, RefundLog, str]]:
    """A store and one receipt paid by card at the exit: 2 x hostile name, 1 x Hebrew name."""
    processor = RefundLog(SimulatedProcessor(seed=7, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path / "store"),
                          processor=processor)  # type: ignore[arg-type]
    container.catalogue.upsert([make_item("EVIL-1", HOSTILE, 250, "GBP"),
                                make_item("MILK-3", HEBREW, 690, "GBP")])
    with authenticated(TestClient(create_app(container)), container.security,
                           container.settings.store_id) as client:
        shopper = client.post("/shoppers", json={"display_name": "Noa",
                                                 "payment_token": "tok_noa"}).json()["id"]
        sid = container.gates.open_session(shopper_id=shopper, entry_method="palm")
        at = datetime.now(UTC) - timedelta(seconds=10)
        for seq, (code, qty) in enumerate((("EVIL-1", 2), ("MILK-3", 1))):
            r = client.post(f"/sessions/{sid}/events", json={
                "kind": "picked", "product_code": code, "quantity": qty, "device_id": "shelf",
                "device_seq": seq, "sensor_time": at.isoformat()})
            assert r.status_code == 201, r.text
        exit_ = client.post(f"/sessions/{sid}/exit").json()
        assert exit_["status"] == "paid", exit_
        yield client, container, processor, exit_["receipt_id"]
    container.close()


def test_receipt_formats_by_query_and_accept(paid: Any) -> None:
    client, _, _, rid = paid
    body = client.get(f"/receipts/{rid}").json()
    assert body["total_minor"] == 2 * 250 + 690 and body["kind"] == "original"
    assert [line["name"] for line in body["lines"]] == [HOSTILE, HEBREW]
    assert body["payments"][0]["kind"] == "card"
    assert sum(t["tax_minor"] for t in body["taxes"]) == round(1190 * 18 / 118)
    text = client.get(f"/receipts/{rid}", headers={"Accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain")
    assert f"\u2068{HEBREW}\u2069" in text.text and "TOTAL" in text.text
    assert "11.90 GBP" in text.text
    page = client.get(f"/receipts/{rid}?format=html")
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page.text
    assert f'<bdi dir="auto">{HEBREW}</bdi>' in page.text
    browser = client.get(f"/receipts/{rid}",
                         headers={"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html")
    assert client.get(f"/receipts/{rid}", headers={"Accept": "image/png"}).status_code == 406
    assert client.get(f"/receipts/{rid}?format=pdf").status_code == 422
    assert client.get("/receipts/rct_nope").status_code == 404


def test_dispute_refunds_once_and_amends_the_receipt(paid: Any) -> None:
    client, container, processor, rid = paid
    dispute = {"dispute_key": "d-1", "product_code": "EVIL-1", "quantity": 1,
               "reason": "only one was taken"}
    first = client.post(f"/receipts/{rid}/disputes", json=dispute)
    assert first.status_code == 201, first.text
    result = first.json()
    assert (result["state"], result["refund_minor"], result["card_refund_minor"]) == (
        "refunded", 250, 250)
    again = client.post(f"/receipts/{rid}/disputes", json=dispute)
    assert again.status_code == 201 and again.json() == result  # the same dispute: refunded once
    assert [(amount, key.startswith("dispute:")) for _, amount, key in processor.refunds] == [
        (250, True)]
    conflict = client.post(f"/receipts/{rid}/disputes", json=dispute | {"quantity": 2})
    assert conflict.status_code == 409
    original = client.get(f"/receipts/{rid}").json()
    assert original["total_minor"] == 1190 and original["amended_by"] == result[
        "amended_receipt_id"]
    amended = client.get(f"/receipts/{result['amended_receipt_id']}").json()
    assert amended["kind"] == "amended" and amended["amends_receipt_id"] == rid
    assert amended["original_receipt_id"] == rid and amended["total_minor"] == 940
    assert [(line["code"], line["quantity"]) for line in amended["lines"]] == [
        ("EVIL-1", 1), ("MILK-3", 1)]
    assert amended["dispute"]["reason"] == "only one was taken"
    html = client.get(f"/receipts/{result['amended_receipt_id']}?format=html").text
    assert f"Amends <a href=\"/receipts/{rid}?format=html\">" in html
    # A second dispute amends the amendment; disputing more than is left is refused.
    too_much = client.post(f"/receipts/{rid}/disputes",
                           json=dispute | {"dispute_key": "d-2", "quantity": 2})
    assert too_much.status_code == 422 and "only 1" in too_much.json()["reason"]
    second = client.post(f"/receipts/{result['amended_receipt_id']}/disputes", json={
        "dispute_key": "d-3", "product_code": "MILK-3", "quantity": 1, "reason": "sour"})
    assert second.status_code == 201 and second.json()["refund_minor"] == 690
    latest = client.get(f"/receipts/{second.json()['amended_receipt_id']}").json()
    assert latest["amends_receipt_id"] == result["amended_receipt_id"]
    assert latest["total_minor"] == 250
    assert [amount for _, amount, _ in processor.refunds] == [250, 690]
    bad = [{"dispute_key": "d-4", "product_code": "EVIL-1", "quantity": -1, "reason": "x"},
           {"dispute_key": "d-4", "product_code": "EVIL-1", "quantity": 1, "reason": ""},
           {"dispute_key": "d-4", "product_code": "NOPE", "quantity": 1, "reason": "x"}]
    for body in bad:
        assert client.post(f"/receipts/{rid}/disputes", json=body).status_code == 422
    assert client.post("/receipts/rct_nope/disputes", json=dispute).status_code == 404
    assert client.get(f"/receipts/{second.json()['amended_receipt_id']}").json() == latest
