"""Voiding a tender at the staffed checkout, on SQLite and PostgreSQL: cash goes back out
of the drawer (the X/Z reports count it), a captured card tender is refunded through the
processor once under ``void:<tender id>`` even when the answer is lost and the void is
sent again, the lines unlock once no tender pays, and the void is refused for pending,
moneyless, unknown and closed tenders. Money is integer minor units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.errors import Conflict, InvalidInput, NotFound, PaymentError
from storefront.payments import SimulatedProcessor
from storefront.payments.base import PaymentPending, ProcessorTimeout
from storefront.settings import Settings
from tests.integration.test_staffed_review_fixes import Clock, Faulty, _card, _cash, _staffed


class Refunds(Faulty):
    """``Faulty`` with refund faults: ``lose_refunds`` answers lost after the refund took
    effect, ``refuse_refunds`` refunds refused before they reach the processor."""

    def __init__(self, inner: SimulatedProcessor) -> None:
        super().__init__(inner)
        self.lose_refunds = 0
        self.refuse_refunds = 0
        self.refund_keys: list[str] = []

    def refund(self, **kw: Any) -> Any:
        self.refund_keys.append(kw["idempotency_key"])
        if self.refuse_refunds:
            self.refuse_refunds -= 1
            raise PaymentError("refund refused (test)")
        done = self.inner.refund(**kw)
        if self.lose_refunds:
            self.lose_refunds -= 1
            raise ProcessorTimeout("refund timed out after it took effect (test)")
        return done

    def refunded(self) -> list[int]:
        """The amounts (minor units) of every refund the processor made."""
        with self.inner._lock:  # noqa: SLF001 - the test reads the simulator's state
            rows = self.inner._conn.execute("SELECT amount FROM refunds").fetchall()  # noqa: SLF001
        return [int(r[0]) for r in rows]


def _store(tmp_path: Path, database: str | None,
           attempts: int) -> tuple[Container, Clock, Refunds]:
    clock = Clock()
    # remember_keys=False: the processor would refund twice under one key, so only the
    # service's own look-up before a resend keeps the refund single.
    processor = Refunds(SimulatedProcessor(seed=5, decline_rate=0.0, remember_keys=False))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database,
                                   payment_retry_attempts=attempts),
                          processor=processor, clock=clock)  # type: ignore[arg-type]
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
    return container, clock, processor


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Refunds]]:
    """A container whose processor calls are tried once (a lost answer ends the request)."""
    container, clock, processor = _store(tmp_path, database, attempts=1)
    yield container, clock, processor
    container.close()


def _void(sid: str, tender_id: str, reason: str = "wrong tender", staff: str = "ann",
          **kw: Any) -> dict[str, Any]:
    return {"session_id": sid, "staff_id": staff, "tender_id": tender_id, "reason": reason,
            **kw}


def _voids(c: Container, sid: str) -> list[Any]:
    return [e for e in c.audit.entries(subject=f"session:{sid}", limit=1000)
            if e.action == "tender_voided"]


def test_a_cash_void_pays_the_cash_back_and_the_drawer_expects_less(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)  # 2 x TEA = 6.00 GBP
    drawer = c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=5000).drawer_id
    cash, balance = c.staffed.take_tender(**_cash(sid, "c1", 1000))
    assert (cash.amount_minor, cash.change_minor, balance) == (600, 400, 0)
    assert c.till.x_report(till_id="t1").expected_cash_minor == 5600
    with pytest.raises(Conflict, match="lines are locked.*void"):
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                          reason="one tea was put back")
    with pytest.raises(InvalidInput, match="reason"):
        c.staffed.void_tender(**_void(sid, cash.id, reason="  "))

    voided, balance = c.staffed.void_tender(**_void(sid, cash.id))
    assert (voided.state, voided.void_state, voided.voided_by, voided.void_reason,
            voided.void_drawer_id, balance) == ("voided", "voided", "ann", "wrong tender",
                                                drawer, 600)
    x = c.till.x_report(till_id="t1")
    assert (x.cash_sales_minor, x.cash_tendered_minor, x.change_given_minor,
            x.cash_voids_minor, x.expected_cash_minor, x.tenders) == (600, 1000, 400, 600,
                                                                     5000, 0)
    cart = c.staffed.cart(sid)
    assert (cart.paid_minor, cart.balance_due_minor) == (0, 600)
    # The same void again (even with another reason) answers with the voided tender.
    again, _ = c.staffed.void_tender(**_void(sid, cash.id, reason="sent twice"))
    assert again == voided
    [entry] = _voids(c, sid)
    assert (entry.actor, entry.details["voided_minor"], entry.details["reason"],
            entry.details["void_drawer_id"]) == ("staff:ann", 600, "wrong tender", drawer)

    # The lines unlock: the correction drops the frozen cart, and the sale goes on.
    c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                      reason="one tea was put back")
    assert c.staffed.cart(sid).total_minor == 300
    with pytest.raises(Conflict, match="balance due"):
        c.staffed.close(session_id=sid, staff_id="ann")
    c.staffed.take_tender(**_cash(sid, "c2", 300))
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.total_minor, closed.paid_minor, closed.change_minor) == (300, 300, 0)
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=5300)
    assert (z.cash_sales_minor, z.cash_voids_minor, z.expected_cash_minor,
            z.difference_minor) == (900, 600, 5300, 0)
    assert c.audit.verify().ok


def test_a_cash_void_after_a_z_report_comes_out_of_the_drawer_open_now(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    cash, _ = c.staffed.take_tender(**_cash(sid, "c1", 600))
    z = c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1600)
    assert z.difference_minor == 0
    with pytest.raises(Conflict, match="no cash drawer is open at till t1"):
        c.staffed.void_tender(**_void(sid, cash.id))
    assert c.staffed.cart(sid).paid_minor == 600  # nothing changed
    second = c.till.open_drawer(till_id="t1", staff_id="bob", float_minor=2000).drawer_id
    voided, _ = c.staffed.void_tender(**_void(sid, cash.id))
    assert voided.void_drawer_id == second
    x = c.till.x_report(till_id="t1")
    assert (x.cash_sales_minor, x.cash_voids_minor, x.expected_cash_minor) == (0, 600, 1400)


def test_a_cash_void_is_refused_when_the_drawer_holds_less_than_it_kept(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
    cash, _ = c.staffed.take_tender(**_cash(sid, "c1", 600))
    c.till.close_drawer(till_id="t1", staff_id="ann", counted_minor=1600)
    c.till.open_drawer(till_id="t1", staff_id="bob", float_minor=500)
    with pytest.raises(Conflict, match=r"more than the drawer at till t1 is expected to hold"):
        c.staffed.void_tender(**_void(sid, cash.id))
    assert c.staffed.cart(sid).paid_minor == 600  # nothing changed
    x = c.till.x_report(till_id="t1")
    assert (x.cash_voids_minor, x.expected_cash_minor) == (0, 500)


def test_a_card_void_refunds_once_even_when_its_answer_is_lost(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    card, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (card.state, balance) == ("captured", 0)

    processor.lose_refunds = 1  # the refund is made, its answer lost (one attempt only)
    with pytest.raises(PaymentPending, match="send the void again"):
        c.staffed.void_tender(**_void(sid, card.id))
    assert processor.refunded() == [600]
    cart = c.staffed.cart(sid)
    [pending] = cart.tenders
    assert (pending.state, pending.void_state, cart.paid_minor) == ("captured", "voiding", 600)
    assert any("void of tender" in b for b in cart.blockers)
    with pytest.raises(Conflict, match="void of tender"):
        c.staffed.close(session_id=sid, staff_id="ann")
    with pytest.raises(Conflict, match="lines are locked"):
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                          reason="one tea was put back")

    processor.lookups_down = True  # the resend cannot look the refund up: nothing is sent
    with pytest.raises(PaymentPending):
        c.staffed.void_tender(**_void(sid, card.id))
    processor.lookups_down = False
    voided, balance = c.staffed.void_tender(**_void(sid, card.id))  # found, not sent again
    assert processor.refunded() == [600]
    assert processor.refund_keys == [f"void:{card.id}"]
    assert (voided.state, voided.void_state, balance) == ("voided", "voided", 600)
    assert voided.void_refund_id
    assert c.staffed.void_tender(**_void(sid, card.id))[0] == voided
    assert processor.refunded() == [600]
    [entry] = _voids(c, sid)
    assert (entry.details["method"], entry.details["refund_id"],
            entry.details["voided_minor"]) == ("card", voided.void_refund_id, 600)

    c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                      reason="one tea was put back")
    again, balance = c.staffed.take_tender(**_card(sid, "k2", 300))
    assert (again.state, balance) == ("captured", 0)
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.total_minor, closed.paid_minor) == (300, 300)
    assert c.audit.verify().ok


def test_a_refused_refund_leaves_the_tender_paid_and_voidable(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.refuse_refunds = 1
    with pytest.raises(PaymentError, match="stays paid"):
        c.staffed.void_tender(**_void(sid, card.id))
    [kept] = c.staffed.cart(sid).tenders
    assert (kept.state, kept.void_state, processor.refunded()) == ("captured", None, [])
    assert _voids(c, sid) == []
    voided, _ = c.staffed.void_tender(**_void(sid, card.id))
    assert (voided.state, processor.refunded()) == ("voided", [600])


def test_a_split_sale_unlocks_only_when_no_tender_pays(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    cash, _ = c.staffed.take_tender(**_cash(sid, "c1", 200))
    card, balance = c.staffed.take_tender(**_card(sid, "k1", 400))
    assert balance == 0
    _, balance = c.staffed.void_tender(**_void(sid, card.id))
    assert balance == 400 and processor.refunded() == [400]
    with pytest.raises(Conflict, match="lines are locked"):  # the cash still pays
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                          reason="one tea was put back")
    c.staffed.void_tender(**_void(sid, cash.id))
    c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                      reason="one tea was put back")
    cart = c.staffed.cart(sid)
    assert (cart.total_minor, cart.paid_minor, cart.frozen) == (300, 0, False)


def test_voids_that_are_refused(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    other = _staffed(c, clock, device_seq=2)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    with pytest.raises(NotFound):
        c.staffed.void_tender(**_void(sid, "tnd_nope"))
    foreign, _ = c.staffed.take_tender(**_cash(other, "c1", 600))
    with pytest.raises(NotFound):
        c.staffed.void_tender(**_void(sid, foreign.id))

    processor.down = True  # the hold is placed, its answer lost: the tender stays pending
    pending, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.down = False
    assert pending.state == "authorizing"
    with pytest.raises(Conflict, match="pending"):
        c.staffed.void_tender(**_void(sid, pending.id))
    resumed, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert resumed.state == "captured"

    # Without a claim (another staff member's void), and a manager under the cashier's claim.
    with pytest.raises(Conflict, match="claimed by staff ann"):
        c.staffed.void_tender(**_void(sid, resumed.id, staff="max"))
    voided, _ = c.staffed.void_tender(**_void(sid, resumed.id, staff="max", supervisor=True))
    assert voided.voided_by == "max"
    assert [e.actor for e in _voids(c, sid)] == ["staff:max"]

    c.staffed.release(session_id=other, staff_id="ann")
    with pytest.raises(Conflict, match="must be claimed first"):
        c.staffed.void_tender(**_void(other, foreign.id, staff="max", supervisor=True))
    c.staffed.claim(session_id=other, staff_id="ann")
    closed = c.staffed.close(session_id=other, staff_id="ann")
    assert closed.paid_minor == 600
    with pytest.raises(Conflict, match="not at the staffed checkout"):
        c.staffed.void_tender(**_void(other, foreign.id))
    # A void recorded before the close still answers once the sale is closed.
    c.staffed.take_tender(**_cash(sid, "c9", 600))
    c.staffed.close(session_id=sid, staff_id="ann")
    assert c.staffed.void_tender(**_void(sid, resumed.id))[0] == voided


def test_a_declined_card_tender_has_nothing_to_void(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    real = processor.inner.capture

    def refused(**kw: Any) -> Any:
        raise PaymentError("capture refused (test)")

    processor.inner.capture = refused
    try:
        failed, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    finally:
        processor.inner.capture = real
    assert failed.state == "voided" and failed.void_state is None  # the hold was released
    with pytest.raises(Conflict, match="took no money"):
        c.staffed.void_tender(**_void(sid, failed.id))


def test_a_lost_refund_answer_is_found_by_the_retries_of_one_request(
        tmp_path: Path) -> None:
    c, clock, processor = _store(tmp_path, None, attempts=3)
    try:
        sid = _staffed(c, clock)
        card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
        processor.lose_refunds = 1
        voided, balance = c.staffed.void_tender(**_void(sid, card.id))
        assert (voided.state, balance, processor.refunded()) == ("voided", 600, [600])
    finally:
        c.close()


def test_the_migration_downgrade_is_refused_while_tenders_are_voided(tmp_path: Path) -> None:
    """Below 0012 a voided card tender would read as paid and a cash payout would vanish:
    the downgrade raises and changes nothing while any tender is voided or voiding, and
    runs once none is (SQLite)."""
    import sqlalchemy as sa
    from alembic import command

    from storefront.db.engine import make_engine
    from storefront.db.migrate import alembic_config, current_revision, head_revision, upgrade
    from storefront.db.models import Tender

    c, clock, _ = _store(tmp_path, None, attempts=1)
    try:
        sid = _staffed(c, clock)
        c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=1000)
        card, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
        c.staffed.void_tender(**_void(sid, card.id))
        url = Settings(data_dir=tmp_path).resolved_database_url()
    finally:
        c.close()
    engine = make_engine(url)
    try:
        with pytest.raises(RuntimeError, match="1 tender.*voided or being voided"):
            command.downgrade(alembic_config(engine), "0011")
        assert current_revision(engine) == "0012"  # later revisions went; 0012 stayed
        with engine.connect() as db:  # nothing dropped
            assert db.execute(sa.select(Tender.void_state)).scalars().all() == ["voided"]
        with engine.begin() as db:  # as if the voided tender's data was dealt with by hand
            db.execute(sa.update(Tender).values(void_state=None))
        command.downgrade(alembic_config(engine), "0011")
        assert current_revision(engine) == "0011"
        with engine.connect() as db:
            columns = {col["name"] for col in sa.inspect(db).get_columns("tenders")}
            drawers = {col["name"] for col in sa.inspect(db).get_columns("cash_drawers")}
        assert "void_state" not in columns and "z_report" not in drawers
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
