"""Review 6, D1b: a Stripe capture whose answer was lost can be retried. The retry finds
the PaymentIntent already ``succeeded`` and returns that capture (same amount) instead of
refusing it, so a staffed card tender finishes; a capture for another amount is still
refused. Against a localstripe server started on a loopback port (which, like Stripe
after 24 hours, does not replay idempotency keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cart.session import RecordItem
from storefront.bootstrap import bootstrap
from storefront.catalog import make_item
from storefront.errors import PaymentError
from storefront.payments.base import ProcessorTimeout
from storefront.payments.stripe_adapter import StripeProcessor
from storefront.settings import Settings
from tests.integration.localstripe import KEY, intent


@pytest.fixture
def processor(localstripe_url: str) -> StripeProcessor:
    return StripeProcessor(api_key=KEY, api_base=localstripe_url, timeout_s=5)


def test_a_retried_capture_returns_the_capture_already_made(processor: StripeProcessor,
                                                            localstripe_url: str) -> None:
    auth = processor.authorize(token="pm_card_visa", amount_minor=5000, currency="EUR",
                               idempotency_key="r1:authorize")
    first = processor.capture(authorization_id=auth.authorization_id, amount_minor=4200,
                              idempotency_key="r1:capture")
    again = processor.capture(authorization_id=auth.authorization_id, amount_minor=4200,
                              idempotency_key="r1:capture")
    assert again == first and again.amount_minor == 4200
    with pytest.raises(PaymentError, match="already captured for 4200"):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=4000,
                          idempotency_key="r1:capture-other")
    assert intent(localstripe_url, auth.authorization_id)["status"] == "succeeded"
    # A refund later does not make the capture's retry look like another capture.
    processor.refund(capture_id=first.capture_id, amount_minor=200,
                     idempotency_key="r1:refund")
    assert processor.capture(authorization_id=auth.authorization_id, amount_minor=4200,
                             idempotency_key="r1:capture") == first


def test_a_capture_refused_because_another_request_captured_first_returns_it(
        processor: StripeProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = processor.authorize(token="pm_card_visa", amount_minor=900, currency="EUR",
                               idempotency_key="r2:authorize")
    stale = processor._retrieve(auth.authorization_id)  # still requires_capture
    done = processor.capture(authorization_id=auth.authorization_id, amount_minor=900,
                             idempotency_key="r2:capture")
    real = processor._retrieve
    reads = iter([stale])
    monkeypatch.setattr(processor, "_retrieve",
                        lambda intent_id: next(reads, None) or real(intent_id))
    # The pre-check sees the stale intent, Stripe refuses the second capture, the adapter
    # reads the intent again and finds this capture.
    assert processor.capture(authorization_id=auth.authorization_id, amount_minor=900,
                             idempotency_key="r2:capture") == done


def test_a_cancelled_intent_is_still_not_captured(processor: StripeProcessor) -> None:
    held = processor.authorize(token="pm_card_visa", amount_minor=900, currency="EUR",
                               idempotency_key="r3:authorize")
    processor.void(authorization_id=held.authorization_id, idempotency_key="r3:void")
    with pytest.raises(PaymentError, match="cannot be captured"):
        processor.capture(authorization_id=held.authorization_id, amount_minor=900,
                          idempotency_key="r3:capture")


class LoseCaptureAnswers:
    """The Stripe adapter; the first ``lost`` captures take effect but their answer is lost."""

    def __init__(self, inner: StripeProcessor, lost: int) -> None:
        self.inner, self.lost = inner, lost

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def capture(self, **kw: Any) -> Any:
        done = self.inner.capture(**kw)
        if self.lost:
            self.lost -= 1
            raise ProcessorTimeout("capture timed out (answer lost after success)")
        return done


def test_a_staffed_card_tender_whose_capture_answer_was_lost_finishes(
        processor: StripeProcessor, localstripe_url: str, tmp_path: Path) -> None:
    proc = LoseCaptureAnswers(processor, lost=1)
    c = bootstrap(Settings(data_dir=tmp_path, currency="EUR"),
                  processor=proc)  # type: ignore[arg-type]
    try:
        c.catalogue.upsert([make_item("TEA", "Tea", 300, "EUR")])
        shopper = c.shoppers.register(display_name="D", payment_token="pm_card_visa").id
        sid = c.gates.open_session(shopper_id=shopper, entry_method="palm")
        c.carts.record_item(sid, RecordItem("picked", "TEA", 2, "d", 1, datetime.now(UTC),
                                            1.0))
        c.carts.send_to_staffed(sid, "test")
        c.read_model.update(sid, status="staffed", staffed_reason="test")
        c.staffed.claim(session_id=sid, staff_id="ann")
        tender, balance = c.staffed.take_tender(
            session_id=sid, staff_id="ann", kind="card", key="k1", till_id="t1",
            amount_minor=600, payment_token="pm_card_visa")
        assert (tender.state, balance, proc.lost) == ("captured", 0, 0)
        assert c.staffed.cart(sid).blockers == ()
        assert c.staffed.close(session_id=sid, staff_id="ann").total_minor == 600
        captured = intent(localstripe_url, tender.capture_id or "")
        assert (captured["status"], captured["amount"]) == ("succeeded", 600)
    finally:
        c.close()
