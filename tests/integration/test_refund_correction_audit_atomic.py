"""A refund or a staff correction is never stored without its audit entry, on SQLite and
PostgreSQL: the audit write is made to fail (a database error, or the process dying in
the middle of it) and afterwards the change and its entry are both stored exactly once,
or neither and sending the request again makes both. A dispute refunded only in cash is
not stored when its entry fails; one whose card refund was made stays ``refunding`` and
sending it again marks it refunded with its entry, without refunding again. A replay,
and a request of a dispute that another request of it finished, add no entry. Money is
integer minor units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import AmendedReceipt, CartCorrection, Dispute
from storefront.payments import SimulatedProcessor
from storefront.security.audit import AuditRecord
from storefront.settings import Settings
from tests.integration.audit_faults import FAILURES, audit_write_fails, raised
from tests.integration.test_staffed_review_fixes import (
    Clock,
    _card,
    _cash,
    _declined,
    _staffed,
)


class Shop:
    """A store on one database with a processor that counts its refund calls (it does
    not de-duplicate keys, so a second refund call would refund again)."""

    def __init__(self, tmp_path: Path, database: str | None) -> None:
        self.clock = Clock()
        self.refund_calls = 0
        self.processor = SimulatedProcessor(seed=5, decline_rate=0.0, remember_keys=False,
                                            on_call=self._count)
        self.c = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                           processor=self.processor, clock=self.clock)
        self.c.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])

    def _count(self, label: str, _key: str) -> None:
        if label == "refund":
            self.refund_calls += 1

    def receipt(self, kind: str) -> str:
        """A staffed sale of 2 x TEA at 3.00 GBP paid by ``kind`` (card or cash), closed."""
        sid = _staffed(self.c, self.clock)
        if kind == "card":
            self.c.staffed.take_tender(**_card(sid, "k1", 600))
        else:
            self.c.staffed.take_tender(**_cash(sid, "c1", 600))
        return self.c.staffed.close(session_id=sid, staff_id="ann").receipt_id


@pytest.fixture
def shop(tmp_path: Path, database: str | None) -> Iterator[Shop]:
    made = Shop(tmp_path, database)
    yield made
    made.c.close()


def _entries(c: Container, action: str) -> list[AuditRecord]:
    return [e for e in c.audit.entries(limit=1000) if e.action == action]


def _disputes(c: Container) -> list[Dispute]:
    with c.db() as db:
        return list(db.scalars(sa.select(Dispute)))


def _dispute(c: Container, receipt: str, actor: str = "staff:bea", **kw: Any) -> Any:
    """Dispute one TEA of ``receipt`` under the key ``d1``, as ``actor``."""
    return c.disputes.dispute(receipt_id=receipt, dispute_key="d1", product_code="TEA",
                              quantity=1, reason="one was broken", actor=actor, **kw)


# --- refunds -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", FAILURES)
def test_a_card_refund_whose_audit_write_fails_stays_refunding_until_sent_again(
        shop: Shop, how: str) -> None:
    c = shop.c
    receipt = shop.receipt("card")
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _dispute(c, receipt)
    assert failed and shop.refund_calls == 1  # the money went back to the card
    [stored] = _disputes(c)
    assert stored.state == "refunding"  # never refunded without its entry
    assert [p["state"] for p in stored.refund_parts] == ["refunded"]
    assert _entries(c, "refund") == []
    done = _dispute(c, receipt)  # sent again: marked refunded with its entry
    assert (done.state, done.refund_minor, done.card_refund_minor) == ("refunded", 300, 300)
    assert shop.refund_calls == 1  # not refunded again
    assert _dispute(c, receipt, actor="staff:cy") == done  # a replay
    [entry] = _entries(c, "refund")
    assert (entry.actor, entry.subject) == ("staff:bea", f"receipt:{receipt}")
    assert entry.details == {"dispute_id": done.dispute_id, "product_code": "TEA",
                             "quantity": 1, "refund_minor": 300}
    assert [d.state for d in _disputes(c)] == ["refunded"]
    assert c.receipts.latest(receipt).total_minor == 300
    assert c.audit.verify().ok


@pytest.mark.parametrize("how", FAILURES)
def test_a_cash_refund_whose_audit_write_fails_is_not_stored_and_is_made_when_sent_again(
        shop: Shop, how: str) -> None:
    c = shop.c
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    receipt = shop.receipt("cash")
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _dispute(c, receipt, till_id="t1")
    assert failed
    # Neither the dispute, nor its amended receipt, nor the cash paid out, nor the entry.
    assert _disputes(c) == [] and _entries(c, "refund") == []
    with c.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AmendedReceipt)) == 0
    assert c.till.x_report(till_id="t1").cash_refunds_minor == 0
    assert c.receipts.latest(receipt).total_minor == 600
    done = _dispute(c, receipt, till_id="t1")  # sent again
    assert (done.state, done.cash_refund_minor, done.card_refund_minor) == ("refunded", 300, 0)
    assert _dispute(c, receipt, till_id="t1") == done  # a replay
    [stored] = _disputes(c)
    [entry] = _entries(c, "refund")
    assert (stored.id, entry.details["dispute_id"], entry.details["refund_minor"]) == (
        done.dispute_id, done.dispute_id, 300)
    assert c.till.x_report(till_id="t1").cash_refunds_minor == 300
    assert shop.refund_calls == 0
    assert c.audit.verify().ok


def test_a_request_that_finds_its_dispute_finished_by_another_adds_no_entry(
        shop: Shop) -> None:
    """Request A made the card refund; before A marks the dispute refunded, request B of
    the same dispute finds the refund made and marks it: only B's move writes the entry,
    A returns the refunded dispute without a second one."""
    c = shop.c
    receipt = shop.receipt("card")
    disputes: Any = c.disputes
    mark = disputes._mark_refunded  # noqa: SLF001 - the test steps between two writes
    others: list[Any] = []

    def other_request_first(*args: Any) -> Any:
        if not others:  # A's move: request B runs to its end first
            others.append(None)
            others.append(_dispute(c, receipt, actor="staff:cy"))  # request B
        return mark(*args)

    disputes._mark_refunded = other_request_first  # noqa: SLF001
    done = _dispute(c, receipt)  # request A
    assert others[1] == done and done.state == "refunded"
    assert shop.refund_calls == 1
    [entry] = _entries(c, "refund")
    assert (entry.actor, entry.details["dispute_id"]) == ("staff:cy", done.dispute_id)
    assert c.audit.verify().ok


# --- corrections ---------------------------------------------------------------------------


def _correct(c: Container, sid: str) -> Any:
    return c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                             reason="only one tea")


def _corrections(c: Container, sid: str) -> list[CartCorrection]:
    with c.db() as db:
        return list(db.scalars(sa.select(CartCorrection)
                               .where(CartCorrection.session_id == sid)))


@pytest.mark.parametrize("how", FAILURES)
def test_a_correction_whose_audit_write_fails_is_not_stored_and_is_made_when_sent_again(
        shop: Shop, how: str) -> None:
    c = shop.c
    sid = _staffed(c, shop.clock)  # 2 x TEA
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _correct(c, sid)
    assert failed
    assert _corrections(c, sid) == [] and _entries(c, "correction") == []
    assert c.staffed.cart(sid).total_minor == 600  # the cart as it was
    made = _correct(c, sid)  # sent again
    [stored] = _corrections(c, sid)
    [entry] = _entries(c, "correction")
    assert (stored.id, stored.quantity_before, stored.quantity_after) == (made.id, 2, 1)
    assert (entry.actor, entry.subject) == ("staff:ann", f"session:{sid}")
    assert entry.details == {"correction_id": made.id, "product_code": "TEA", "before": 2,
                             "after": 1, "reason": "only one tea"}
    assert c.staffed.cart(sid).total_minor == 300
    assert c.audit.verify().ok


@pytest.mark.parametrize("how", FAILURES)
def test_an_unfreezing_correction_whose_audit_write_fails_leaves_the_cart_frozen(
        shop: Shop, how: str) -> None:
    """The correction that un-freezes a cart after a declined tender: when its entry fails,
    the cart stays frozen at its price; sent again, it un-freezes with its entry."""
    c = shop.c
    sid = _staffed(c, shop.clock)
    real = shop.processor.authorize
    shop.processor.authorize = lambda **kw: _declined(kw)  # type: ignore[method-assign]
    assert c.staffed.take_tender(**_card(sid, "k1", 600))[0].state == "declined"
    shop.processor.authorize = real  # type: ignore[method-assign]
    c.catalogue.upsert([make_item("TEA", "Tea", 250, "GBP")])
    with audit_write_fails(c, how) as failed, pytest.raises(raised(how)):
        _correct(c, sid)
    assert failed
    cart = c.staffed.cart(sid)
    assert (cart.frozen, cart.total_minor) == (True, 600)  # the un-freeze rolled back too
    assert _corrections(c, sid) == [] and _entries(c, "correction") == []
    made = _correct(c, sid)
    cart = c.staffed.cart(sid)
    assert (cart.frozen, cart.total_minor) == (False, 250)
    [entry] = _entries(c, "correction")
    assert (entry.details["correction_id"], entry.details["unfrozen_total_minor"]) == (
        made.id, 600)
    assert len(_corrections(c, sid)) == 1
    assert c.audit.verify().ok
