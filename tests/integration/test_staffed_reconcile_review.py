"""Regression tests of defects a review found in commit 07c8750 (staffed card tenders
settled by reconciliation): a hold left open behind a tender recorded failed, and a
Stripe look-up miss taken as proof that no hold exists. Money is integer minor units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storefront.bootstrap import bootstrap
from storefront.catalog import make_item
from storefront.payments.stripe_adapter import StripeProcessor
from storefront.settings import Settings
from tests.integration.localstripe import KEY, intent
from tests.integration.test_staffed_reconcile import (  # noqa: F401 - fixture
    LATER,
    _crash,
    _reconcile,
    _tender,
    shop,
)
from tests.integration.test_staffed_review_fixes import (
    Clock,
    Crash,
    Faulty,
    _card,
    _staffed,
)


class _KeepsHolds(Faulty):
    """``Faulty`` that remembers the authorization of every hold it placed."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.placed: list[str] = []

    def authorize(self, **kw: Any) -> Any:
        crash, self.crash_authorize = self.crash_authorize, None
        done = self.inner.authorize(**kw)
        self.placed.append(done.authorization_id)
        self.crash_authorize = crash
        if crash == "after":
            raise Crash
        return done


def test_a_resend_whose_hold_answer_is_lost_after_reconcile_failed_it_leaves_no_hold(
        shop: Any) -> None:  # noqa: F811 - the imported fixture
    """Reconciliation records ``failed`` with a compare-and-set on the state only, not on
    its own claim stamp, so it writes over a cashier's resend that stamped the tender and
    is in mid-authorize. When that resend's hold is placed but its answer is lost
    (timeout, look-ups down), the resend's own write (``authorizing`` -> ``authorizing``
    with "outcome unknown") fails the compare and it simply returns: the tender reads
    ``failed`` ("no money was taken; take another tender") while a hold of 6.00 sits on
    the shopper's card, which nothing will ever void (the tender is no longer pending, so
    neither a resend nor the next reconciliation looks at it).

    Now: reconciliation backs off when the tender was stamped after its claim, and a later
    run looks for a hold that arrived after it recorded a tender ``failed`` for lack of
    one and releases it (``Till.release_late_holds``): no hold stays behind a tender that
    reads ``failed``."""
    c, clock, processor = shop
    sid = _crash(c, clock, processor, "before")  # tender k1 authorizing, no hold yet
    outcomes: list[str] = []

    def reconciler() -> None:  # the resend's authorization is slow: reconciliation runs
        clock.now += LATER
        outcomes.extend(t.outcome for t in _reconcile(c, clock).tenders)
        processor.down = True  # the hold is placed but its answer and look-ups are lost
    processor.before_authorize = reconciler
    tender, _ = c.staffed.take_tender(**_card(sid, "k1", 600))
    processor.down = False
    assert outcomes == ["no_money"]
    row = _tender(c, sid)
    assert (tender.state, row.state) == ("failed", "failed"), row.state
    clock.now += LATER
    _reconcile(c, clock)  # a later run does not release it either
    # The defect was a live 6.00 hold on the card behind a tender that says no money: the
    # next run finds the hold that arrived late and releases it.
    assert processor.open_holds() == [], processor.open_holds()
    assert "released" in (_tender(c, sid).failure_reason or "")


def test_reconcile_does_not_fail_a_tender_whose_stripe_hold_the_look_up_missed(
        tmp_path: Path, localstripe_url: str) -> None:
    """With Stripe, the look-up of an authorization by its key is a search, and when the
    Search API is unavailable (429/5xx, or localstripe) the adapter falls back to the 100
    newest PaymentIntents, so "not found" is not proof that no hold exists. The tender
    path only ever used a miss to re-send the authorization under the same idempotency
    key (Stripe answers with the existing intent), which is safe; reconciliation now
    takes the miss as final: a crashed tender whose hold IS on the card is recorded
    ``failed`` ("no money was taken; take another tender") once 100 other payments were
    made in the store (before and after it: localstripe lists the oldest first, Stripe the
    newest), and the hold is left open (the shopper then pays again).

    Now: a processor whose look-up is not complete (``lookup_is_complete`` False, as
    Stripe's) never gets a tender recorded ``failed`` on a miss: the tender stays pending
    (``still_pending``) for a cashier's resend, which sends the authorization again under
    the same key."""
    clock = Clock()
    stripe_processor = StripeProcessor(api_key=KEY, api_base=localstripe_url, timeout_s=5)
    processor = _KeepsHolds(stripe_processor)
    c = bootstrap(Settings(data_dir=tmp_path),  # SQLite: the Stripe look-up is the subject
                  processor=processor, clock=clock)
    try:
        c.catalogue.upsert([make_item("TEA", "Tea", 300, "GBP")])
        sid = _staffed(c, clock)
        _sell(stripe_processor, f"{sid}:before", 100)
        processor.crash_authorize = "after"  # the hold is placed, then the process dies
        with pytest.raises(Crash):
            c.staffed.take_tender(**_card(sid, "k1", 600), payment_token="pm_card_visa")
        assert len(processor.placed) == 1
        processor.crash_authorize = None
        row = _tender(c, sid)
        assert row.state == "authorizing"
        _sell(stripe_processor, f"{sid}:after", 100)  # the store keeps selling meanwhile
        clock.now += LATER
        done = _reconcile(c, clock).tenders
        assert len(processor.placed) == 1  # reconciliation sent no authorization
        held = intent(localstripe_url, processor.placed[0])
        after = _tender(c, sid)
        # The defect was: the tender read failed while its hold was still open on the card.
        assert (after.state, held["status"]) != ("failed", "requires_capture"), done
        assert after.state == "authorizing", (after.state, after.failure_reason)
        assert [t.outcome for t in done] == ["still_pending"]
        assert stripe_processor.lookup_is_complete is False
    finally:
        c.close()



def _sell(processor: StripeProcessor, prefix: str, n: int) -> None:
    """``n`` other payments of 1.00 at the processor (holds of other sales)."""
    for i in range(n):
        processor.authorize(token="pm_card_visa", amount_minor=100, currency="GBP",
                            idempotency_key=f"{prefix}:{i}")
