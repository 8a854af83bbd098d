"""Regression tests of the staffed checkout and till after review 6, on SQLite through the
service layer: a pending card tender is resumed under its key (D1), the cart is frozen
when the first tender is taken (D3), a tender is priced inside its guarded transaction
(D4), a lost authorization answer is looked up instead of leaving a stray hold (D6), the
correction limit holds under parallel corrections (D7), and concurrent closes all answer
with the one receipt (D9). Money is integer minor units."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cart.session import RecordItem
from storefront.bootstrap import Container, bootstrap
from storefront.catalog import make_item
from storefront.db.models import Receipt, Tender
from storefront.errors import Conflict, InvalidInput
from storefront.payments import SimulatedProcessor
from storefront.payments.balance import unpaid_balance
from storefront.payments.base import ProcessorTimeout
from storefront.pricing import Promotion, PromotionKind, PromotionRepository
from storefront.security.errors import PermissionDenied
from storefront.settings import Settings


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the service catches it)."""


class Faulty:
    """The simulated processor with faults on demand.

    ``lose_captures``: that many capture answers are lost after the capture took effect.
    ``down``: every authorize and capture takes effect but its answer is lost, and every
    look-up times out; ``lookups_down``: only look-ups time out. ``crash_authorize``:
    "before" dies before the hold is placed, "after" once it is placed. ``tokens``: the
    card token of every authorize call, in order.
    """

    def __init__(self, inner: SimulatedProcessor) -> None:
        self.inner = inner
        self.lose_captures = 0
        self.down = False
        self.lookups_down = False
        self.crash_authorize: str | None = None
        self.after_authorize: Callable[[], None] | None = None
        self.tokens: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def authorize(self, **kw: Any) -> Any:
        self.tokens.append(kw["token"])
        if self.crash_authorize == "before":
            raise Crash
        done = self.inner.authorize(**kw)
        if self.crash_authorize == "after":
            raise Crash
        if self.after_authorize is not None:
            self.after_authorize()
        if self.down:
            raise ProcessorTimeout("authorize timed out after the hold was placed (test)")
        return done

    def capture(self, **kw: Any) -> Any:
        done = self.inner.capture(**kw)
        if self.down or self.lose_captures:
            self.lose_captures = max(0, self.lose_captures - 1)
            raise ProcessorTimeout("capture timed out after it took effect (test)")
        return done

    def lookup(self, **kw: Any) -> Any:
        if self.down or self.lookups_down:
            raise ProcessorTimeout("look-up timed out (test)")
        return self.inner.lookup(**kw)

    def captured(self) -> int:
        """Minor units captured at the processor, all holds."""
        return self.inner.captured_total()

    def open_holds(self) -> list[dict[str, object]]:
        """Holds neither captured nor voided (money held on a card)."""
        return [h for h in self.inner.holds() if h["status"] == "authorized"
                and h["captured_minor"] is None and not h["voided"]]


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[tuple[Container, Clock, Faulty]]:
    """A container on SQLite and on PostgreSQL (the races are decided by each database's
    own locking), with a simulated processor that can lose answers."""
    clock = Clock()
    processor = Faulty(SimulatedProcessor(seed=5, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path, database_url=database),
                          processor=processor, clock=clock)
    container.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")]
                               + [make_item(f"P{i}", f"P{i}", 100, "GBP") for i in range(8)])
    yield container, clock, processor
    container.close()


def _staffed(c: Container, clock: Clock, qty: int = 2, device_seq: int = 1) -> str:
    shopper = c.shoppers.register(display_name="Noa", payment_token="tok_noa").id
    sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
    c.carts.record_item(sid, RecordItem("picked", "TEA", qty, "d", device_seq, clock.now, 1.0))
    c.carts.send_to_staffed(sid, "payment declined (test)")
    c.read_model.update(sid, status="staffed", staffed_reason="payment declined (test)",
                        exited_at=clock.now)
    c.staffed.claim(session_id=sid, staff_id="ann")
    return sid


def _card(sid: str, key: str, amount: int) -> dict[str, Any]:
    return {"session_id": sid, "staff_id": "ann", "kind": "card", "key": key,
            "till_id": "t1", "amount_minor": amount}


def _cash(sid: str, key: str, amount: int) -> dict[str, Any]:
    return {"session_id": sid, "staff_id": "ann", "kind": "cash", "key": key,
            "till_id": "t1", "amount_minor": amount}


def _set_price(c: Container, minor: int) -> None:
    c.catalogue.upsert([make_item("TEA", "Tea", minor, "GBP")])


def _race(n: int, fn: Callable[[int], str]) -> list[str]:
    """Run ``fn(0) .. fn(n - 1)`` in threads released together; their results, or the
    name of the exception each raised (with its message for anything unexpected)."""
    barrier, out = threading.Barrier(n), []

    def run(i: int) -> None:
        barrier.wait()
        try:
            out.append(fn(i))
        except PermissionDenied:
            out.append("PermissionDenied")
        except Exception as exc:  # noqa: BLE001 - the test reports any other failure
            out.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


# --- D1: a pending card tender is resumed with its key --------------------------------


def test_a_capture_whose_answer_was_lost_once_is_found_by_look_up(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    processor.lose_captures = 1
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (tender.state, balance, processor.captured()) == ("captured", 0, 600)
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 600


def test_a_pending_card_tender_is_finished_by_sending_it_again(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    # The capture goes through, but its answer and every look-up are lost.
    processor.lose_captures, processor.lookups_down = 99, True
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (tender.state, tender.key, balance) == ("authorized", "k1", 600)
    assert "outcome unknown" in (tender.reason or "") and processor.captured() == 600
    for other in (_card(sid, "k2", 600), _cash(sid, "k3", 600)):
        with pytest.raises(Conflict, match="pending: send it again with its key 'k1'"):
            c.staffed.take_tender(**other)
    with pytest.raises(Conflict, match="pending"):
        c.staffed.close(session_id=sid, staff_id="ann")
    assert any("'k1'" in b for b in c.staffed.cart(sid).blockers)
    processor.lose_captures, processor.lookups_down = 0, False
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))  # the documented resume
    assert (tender.state, balance, processor.captured()) == ("captured", 0, 600)
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.total_minor, closed.paid_minor) == (600, 600)
    shopper = c.read_model.get(sid).shopper_id
    assert unpaid_balance(c.db, shopper_id=shopper, now=clock.now + timedelta(hours=1),
                          grace=timedelta(minutes=15)) is None
    assert processor.open_holds() == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_in_mid_authorize_resumes_under_the_same_key(store: Any, when: str) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock, qty=1)
    processor.crash_authorize = when
    with pytest.raises(Crash):
        c.staffed.take_tender(**_card(sid, "k1", 300))
    processor.crash_authorize = None
    assert c.staffed.cart(sid).tenders[0].state == "authorizing"
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 300))
    assert (tender.state, balance) == ("captured", 0)
    assert len(processor.inner.holds()) == 1 and processor.captured() == 300
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 300


def _stored_tender(c: Container, sid: str) -> Tender:
    with c.db() as db:
        return db.scalars(sa.select(Tender).where(Tender.session_id == sid)).one()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_resumed_card_tender_is_finished_on_the_card_it_was_started_with(
        store: Any, when: str) -> None:
    """Review 6b, item 1: the tender records the card it was started with; a resume with
    another token is refused, a resume with none uses that card, not the card on file."""
    c, clock, processor = store
    sid = _staffed(c, clock, qty=1)
    first = {**_card(sid, "k1", 300), "payment_token": "tok_card_a"}
    processor.crash_authorize = when
    with pytest.raises(Crash):
        c.staffed.take_tender(**first)
    processor.crash_authorize = None
    row = _stored_tender(c, sid)
    digest = hashlib.sha256(b"tok_card_a").hexdigest()
    assert (row.state, row.payment_token, row.payment_token_sha256) == (
        "authorizing", "tok_card_a", digest)
    with pytest.raises(Conflict, match="started on another card"):
        c.staffed.take_tender(**{**first, "payment_token": "tok_someone_else_b"})
    assert "tok_someone_else_b" not in processor.tokens
    assert _stored_tender(c, sid).state == "authorizing"
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 300))  # no token: card A
    assert (tender.state, balance, processor.captured()) == ("captured", 0, 300)
    assert set(processor.tokens) == {"tok_card_a"}  # never the card on file (tok_noa)
    assert len(processor.inner.holds()) == 1
    row = _stored_tender(c, sid)  # the clear token is gone once it is no longer needed
    assert (row.payment_token, row.payment_token_sha256) == (None, digest)
    # A replay of the finished tender: the same card (or none) answers, another is refused.
    assert c.staffed.take_tender(**first)[0].state == "captured"
    with pytest.raises(Conflict, match="started on another card"):
        c.staffed.take_tender(**{**first, "payment_token": "tok_someone_else_b"})
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 300


def test_a_new_card_tender_without_a_token_is_the_card_on_file(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock, qty=1)
    assert c.staffed.take_tender(**_card(sid, "k1", 300))[0].state == "captured"
    assert processor.tokens == ["tok_noa"]
    assert _stored_tender(c, sid).payment_token_sha256 == hashlib.sha256(
        b"tok_noa").hexdigest()


# --- D3: the cart is frozen when the first tender is taken ----------------------------


def test_a_price_cut_after_a_cash_tender_does_not_make_the_sale_overpaid(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    assert not c.staffed.cart(sid).frozen and c.staffed.cart(sid).priced_at is None
    tender, balance = c.staffed.take_tender(**_cash(sid, "c1", 1000))
    assert (tender.amount_minor, tender.change_minor, balance) == (600, 400, 0)
    _set_price(c, 250)
    cart = c.staffed.cart(sid)
    assert (cart.total_minor, cart.balance_due_minor, cart.blockers) == (600, 0, ())
    assert cart.frozen and cart.priced_at == clock.now
    closed = c.staffed.close(session_id=sid, staff_id="ann")
    assert (closed.total_minor, closed.paid_minor, closed.change_minor) == (600, 600, 400)
    with c.db() as db:
        receipt = db.scalars(sa.select(Receipt).where(Receipt.session_id == sid)).one()
        assert receipt.total_minor == 600 and receipt.lines[0]["unit_price_minor"] == 300


def test_a_price_rise_after_a_part_payment_asks_for_the_frozen_balance(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    assert c.staffed.take_tender(**_card(sid, "k1", 200))[1] == 400
    _set_price(c, 400)
    assert c.staffed.cart(sid).balance_due_minor == 400
    with pytest.raises(InvalidInput, match="balance due 4.00"):
        c.staffed.take_tender(**_card(sid, "k2", 600))
    assert c.staffed.take_tender(**_cash(sid, "c1", 500))[0].change_minor == 100
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 600


def test_a_promotion_ending_at_midnight_between_tender_and_close(store: Any) -> None:
    c, clock, _ = store
    clock.now = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)
    PromotionRepository(c.catalogue.sessions).replace_source("test", [Promotion(
        "half-tea", PromotionKind.PERCENT_OFF, frozenset({"TEA"}), rate_bp=5000,
        valid_until=date(2026, 3, 2))])
    sid = _staffed(c, clock)
    assert c.staffed.cart(sid).total_minor == 300
    c.staffed.take_tender(**_card(sid, "k1", 300))
    clock.now = datetime(2026, 3, 3, 0, 1, tzinfo=UTC)  # the promotion has ended
    assert c.staffed.cart(sid).blockers == ()
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 300


def test_corrections_after_a_tender_are_refused_with_the_reason(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.staffed.take_tender(**_card(sid, "k1", 100))
    with pytest.raises(Conflict, match=r"locked at 6\.00 GBP.*dispute"):
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                          reason="one tea")


def test_a_correction_after_a_declined_tender_unfreezes_the_cart_audited(
        store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    processor.inner.authorize, real = (lambda **kw: _declined(kw)), processor.inner.authorize
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.inner.authorize = real
    assert tender.state == "declined" and c.staffed.cart(sid).frozen
    _set_price(c, 250)
    assert c.staffed.cart(sid).total_minor == 600  # still the frozen price
    c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                      reason="only one tea")
    cart = c.staffed.cart(sid)
    assert (cart.frozen, cart.total_minor) == (False, 250)  # priced live again
    audit = [e for e in c.audit.entries(subject=f"session:{sid}") if e.action == "correction"]
    assert audit[-1].details["unfrozen_total_minor"] == 600
    assert c.staffed.take_tender(**_card(sid, "k2", 250))[0].state == "captured"
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 250


def _declined(kw: dict[str, Any]) -> Any:
    from storefront.payments import Authorization
    return Authorization("auth_declined", "declined", kw["amount_minor"], kw["currency"],
                         "insufficient funds (test)")


# --- D4: the tender is priced inside its guarded transaction --------------------------


def test_a_correction_between_the_checks_and_the_charge_is_seen(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    real_take = c.till.take

    def take_after_another_tab(request: Any, **kw: Any) -> Any:
        c.staffed.correct(session_id=sid, staff_id="ann", product_code="TEA", quantity=1,
                          reason="only one tea")
        return real_take(request, **kw)
    c.till.take = take_after_another_tab
    with pytest.raises(InvalidInput, match="balance due 3.00"):
        c.staffed.take_tender(**_card(sid, "k1", 600))
    c.till.take = real_take
    assert processor.inner.holds() == [] and not c.staffed.cart(sid).frozen
    assert c.staffed.take_tender(**_card(sid, "k1", 300))[1] == 0
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 300


# --- D6: a lost authorization answer never leaves a stray hold ------------------------


def test_an_authorization_whose_answer_was_lost_is_looked_up(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    real = processor.inner.authorize

    def answer_lost(**kw: Any) -> Any:
        real(**kw)
        raise ProcessorTimeout("authorize timed out after the hold was placed (test)")
    processor.inner.authorize = answer_lost
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (tender.state, balance) == ("captured", 0)
    holds = processor.inner.holds()
    assert len(holds) == 1 and holds[0]["captured_minor"] == 600
    with pytest.raises(Conflict, match="nothing is due"):
        c.staffed.take_tender(**_card(sid, "k2", 600))
    assert len(processor.inner.holds()) == 1


def test_an_unknown_authorization_stays_pending_never_failed(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)
    processor.down = True
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert tender.state == "authorizing" and "outcome unknown" in (tender.reason or "")
    with pytest.raises(Conflict, match="pending"):
        c.staffed.take_tender(**_card(sid, "k2", 600))
    processor.down = False
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert tender.state == "captured"
    assert len(processor.inner.holds()) == 1 and processor.open_holds() == []


def test_a_hold_the_tender_will_not_use_is_voided(store: Any) -> None:
    c, clock, processor = store
    sid = _staffed(c, clock)

    def ended_elsewhere() -> None:  # another request of the tender recorded it failed
        with c.db.begin() as db:
            db.execute(sa.update(Tender).where(Tender.session_id == sid)
                       .values(state="failed", failure_reason="failed elsewhere (test)"))
    processor.after_authorize = ended_elsewhere
    tender, balance = c.staffed.take_tender(**_card(sid, "k1", 600))
    assert (tender.state, balance) == ("failed", 600)
    holds = processor.inner.holds()
    assert len(holds) == 1 and holds[0]["voided"] and processor.open_holds() == []


# --- D7: the correction limit inside the guarded transaction --------------------------


def test_parallel_corrections_cannot_exceed_the_cashiers_limit(store: Any) -> None:
    c, clock, _ = store
    sid = _staffed(c, clock, qty=1)
    real_check = c.staffed._check_change_limit

    def slow_check(*a: Any, **k: Any) -> None:  # widen the window between check and write
        real_check(*a, **k)
        time.sleep(0.1)
    c.staffed._check_change_limit = slow_check

    def correct(i: int) -> str:
        c.staffed.correct(session_id=sid, staff_id="ann", product_code=f"P{i}",
                          quantity=5, reason="added", max_change=5)
        return "ok"
    assert sorted(_race(6, correct)) == ["PermissionDenied"] * 5 + ["ok"]
    corrections = c.staffed.cart(sid).corrections
    assert sum(abs(x.quantity_after - x.quantity_before) for x in corrections) == 5


# --- D9: concurrent closes ------------------------------------------------------------


def test_concurrent_closes_all_answer_with_the_one_receipt(store: Any) -> None:
    c, clock, _ = store
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    for round_ in range(3):
        sid = _staffed(c, clock, device_seq=round_ + 1)
        c.staffed.take_tender(**_cash(sid, f"c{round_}", 600))
        outcomes = _race(5, lambda _i, sid=sid: c.staffed.close(  # type: ignore[misc]
            session_id=sid, staff_id="ann").receipt_id)
        assert len(set(outcomes)) == 1 and outcomes[0].startswith("rct_"), outcomes
        with c.db() as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(Receipt)
                             .where(Receipt.session_id == sid)) == 1
        assert c.read_model.get(sid).status == "settled"


def test_a_product_marked_age_restricted_after_the_freeze_needs_the_check(
        store: Any) -> None:
    """Review 6b, item 3: the frozen cart keeps its prices, but the age check is needed
    when the product is age-restricted now even though it was not at the first tender."""
    c, clock, _ = store
    sid = _staffed(c, clock)
    c.till.open_drawer(till_id="t1", staff_id="ann", float_minor=0)
    assert not c.staffed.cart(sid).age_check_required
    c.staffed.take_tender(**_cash(sid, "c1", 200))  # freezes the cart
    c.catalogue.merge("TEA", "Tea", 450, "GBP", age_restricted=True)  # flag and price
    cart = c.staffed.cart(sid)
    assert cart.frozen and cart.total_minor == 600 and cart.age_check_required
    assert any(b.startswith("age check required") for b in cart.blockers)
    with pytest.raises(Conflict, match="age check required"):
        c.staffed.take_tender(**_cash(sid, "c2", 400))
    with pytest.raises(Conflict, match="age check required"):
        c.staffed.close(session_id=sid, staff_id="ann")
    c.staffed.confirm_age(session_id=sid, staff_id="ann")
    assert c.staffed.take_tender(**_cash(sid, "c2", 400))[1] == 0
    assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 600
