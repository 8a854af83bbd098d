"""A tender sent again after the staffed sale closed, on SQLite and PostgreSQL: the same
request (key, kind, amount, till, and no card or the same card) answers with the stored
tender, as it does while the sale is open; the key with another amount or card is refused
with the reason, and nothing stored or charged changes. Money is integer minor units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from storefront.api.app import create_app
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import Tender
from storefront.errors import Conflict
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings
from tests.integration.test_staffed_review_fixes import Clock, Faulty, _card, _cash, _race, _staffed


@pytest.fixture
def shop(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Faulty]]:
    """A container on SQLite and on PostgreSQL with a drawer open at till t1."""
    clock = Clock()
    processor = Faulty(SimulatedProcessor(seed=13, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                          processor=processor, clock=clock)
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    container.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    yield container, clock, processor
    container.close()


def _rows(c: Container, sid: str) -> list[dict[str, Any]]:
    """Every stored column of the session's tenders, oldest first."""
    with c.db() as db:
        rows = db.scalars(sa.select(Tender).where(Tender.session_id == sid)
                          .order_by(Tender.created_at, Tender.id)).all()
        return [{col.name: getattr(row, col.key) for col in Tender.__table__.columns}
                for row in rows]


def _split_sale(c: Container, clock: Clock) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A closed 6.00 GBP sale paid 3.50 on card A then 2.50 cash (3.00 handed over);
    returns the session and the two tender requests."""
    sid = _staffed(c, clock)
    cash = _cash(sid, "c1", 300)
    card = {**_card(sid, "k1", 350), "payment_token": "tok_card_a"}
    c.staffed.take_tender(**card)
    c.staffed.take_tender(**cash)
    c.staffed.close(session_id=sid, staff_id="ann")
    return sid, cash, card


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_the_same_request_answers_with_the_stored_tender(shop: Any, closed: bool) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    cash, card = _cash(sid, "c1", 300), {**_card(sid, "k1", 350), "payment_token": "tok_card_a"}
    first_card, balance = c.staffed.take_tender(**card)
    assert (first_card.state, balance) == ("captured", 250)
    first_cash, balance = c.staffed.take_tender(**cash)
    assert (first_cash.amount_minor, first_cash.change_minor, balance) == (250, 50, 0)
    if closed:
        c.staffed.close(session_id=sid, staff_id="ann")
    stored, tokens = _rows(c, sid), list(processor.tokens)
    for request, first in ((card, first_card), (cash, first_cash),
                           ({**card, "payment_token": None}, first_card)):  # no card: as stored
        again, balance = c.staffed.take_tender(**request)
        assert (again, balance) == (first, 0)
    assert _rows(c, sid) == stored  # nothing written, nothing charged
    assert (processor.tokens, processor.captured()) == (tokens, 350)
    assert len(processor.inner.holds()) == 1


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_the_key_with_another_amount_or_card_is_refused_with_the_reason(
        shop: Any, closed: bool) -> None:
    c, clock, processor = shop
    sid = _staffed(c, clock)
    cash, card = _cash(sid, "c1", 300), {**_card(sid, "k1", 350), "payment_token": "tok_card_a"}
    c.staffed.take_tender(**card)
    c.staffed.take_tender(**cash)
    if closed:
        c.staffed.close(session_id=sid, staff_id="ann")
    stored, tokens = _rows(c, sid), list(processor.tokens)
    refused = [
        ({**card, "amount_minor": 340},
         r"key 'k1' was already used for another tender: card 3\.50 GBP at till t1 \(now "
         r"captured\), not card 3\.40 GBP at till t1; a new tender needs a new key"),
        ({**card, "kind": "cash"}, r"already used for another tender: card 3\.50 GBP"),
        ({**card, "till_id": "t2"}, r"at till t1 \(now captured\), not card 3\.50 GBP at till t2"),
        ({**card, "payment_token": "tok_card_b"}, "'k1' was started on another card"),
        ({**cash, "amount_minor": 400}, r"cash 3\.00 GBP at till t1 \(now taken\), not cash 4"),
    ]
    for request, reason in refused:
        with pytest.raises(Conflict, match=reason):
            c.staffed.take_tender(**request)
    assert _rows(c, sid) == stored
    assert (processor.tokens, processor.captured()) == (tokens, 350)


def test_a_new_tender_on_a_closed_sale_is_refused(shop: Any) -> None:
    c, clock, processor = shop
    sid, _cash_request, card = _split_sale(c, clock)
    stored = _rows(c, sid)
    with pytest.raises(Conflict, match="is settled: the sale is closed and takes no new tender"):
        c.staffed.take_tender(**{**card, "key": "k2"})
    assert _rows(c, sid) == stored and processor.captured() == 350


def test_replays_racing_the_close_all_answer_with_the_stored_tender(shop: Any) -> None:
    c, clock, processor = shop
    for round_ in range(3):
        sid = _staffed(c, clock, device_seq=round_ + 1)
        card = _card(sid, "k1", 600)
        first, _ = c.staffed.take_tender(**card)

        def run(i: int, sid: str = sid, card: dict[str, Any] = card) -> str:
            if i == 0:
                return str(c.staffed.close(session_id=sid, staff_id="ann").receipt_id)
            tender, balance = c.staffed.take_tender(**card)
            return f"{tender.id}:{tender.state}:{balance}"
        outcomes = _race(4, run)
        replays = [o for o in outcomes if not o.startswith("rct_")]
        assert replays == [f"{first.id}:captured:0"] * 3, outcomes
        assert c.read_model.get(sid).status == "settled"
    assert processor.captured() == 3 * 600 and len(processor.inner.holds()) == 3


def test_over_http_a_replay_after_the_close_is_the_stored_tender_and_a_change_is_409(
        shop: Any) -> None:
    c, clock, processor = shop
    sid, cash, card = _split_sale(c, clock)
    stored = _rows(c, sid)
    with authenticated(TestClient(create_app(c)), c.security, c.settings.store_id) as client:
        path = f"/staff/sessions/{sid}/tenders"

        def body(request: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in request.items() if k != "session_id"}
        again = client.post(path, json=body(card))
        assert again.status_code == 201, again.text
        assert again.json()["tender"]["id"] == next(r["id"] for r in stored
                                                     if r["kind"] == "card")
        assert (again.json()["tender"]["state"], again.json()["balance_due_minor"]) == (
            "captured", 0)
        cash_again = client.post(path, json=body(cash))
        assert cash_again.status_code == 201 and cash_again.json()["tender"]["change_minor"] == 50
        for changed, says in (({**card, "amount_minor": 300}, "already used for another tender"),
                              ({**card, "payment_token": "tok_card_b"}, "another card")):
            refused = client.post(path, json=body(changed))
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "conflict" and says in refused.json()["reason"]
    assert _rows(c, sid) == stored and processor.captured() == 350
