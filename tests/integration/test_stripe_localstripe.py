"""The Stripe adapter end to end against a localstripe server started on a loopback port.

localstripe (a stateful fake of the Stripe API) ignores idempotency keys and has
neither the Search API nor incremental authorization: the adapter finds lost
holds by their metadata and the service re-authorizes, which is what runs here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.errors import EntryRefused, PaymentError
from storefront.payments.stripe_adapter import StripeProcessor
from storefront.settings import Settings
from tests.integration.localstripe import KEY, intent

ITEMS = builtin_items()


@pytest.fixture
def processor(localstripe_url: str) -> StripeProcessor:
    return StripeProcessor(api_key=KEY, api_base=localstripe_url, timeout_s=5)


def test_hold_capture_refund_void_and_lookups(processor: StripeProcessor,
                                              localstripe_url: str) -> None:
    auth = processor.authorize(token="pm_card_visa", amount_minor=5000, currency="GBP",
                               idempotency_key="t1:authorize")
    assert auth.status == "authorized" and auth.authorization_id.startswith("pi_")
    found = processor.lookup(kind="authorize", idempotency_key="t1:authorize", reference=None)
    assert found is not None and found.reference == auth.authorization_id
    assert processor.lookup(kind="capture", idempotency_key="t1:capture",
                            reference=auth.authorization_id) is None
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=auth.authorization_id, amount_minor=5001,
                          idempotency_key="t1:capture-too-much")
    capture = processor.capture(authorization_id=auth.authorization_id, amount_minor=4200,
                                idempotency_key="t1:capture")
    assert intent(localstripe_url, auth.authorization_id)["status"] == "succeeded"
    seen = processor.lookup(kind="capture", idempotency_key="t1:capture",
                            reference=auth.authorization_id)
    assert seen is not None and seen.amount_minor == 4200
    refund = processor.refund(capture_id=capture.capture_id, amount_minor=700,
                              idempotency_key="t1:refund:1")
    assert refund.amount_minor == 700
    again = processor.lookup(kind="refund", idempotency_key="t1:refund:1",
                             reference=capture.capture_id)
    assert again is not None and again.reference == refund.refund_id
    with pytest.raises(PaymentError):  # a captured hold cannot be released
        processor.void(authorization_id=auth.authorization_id, idempotency_key="t1:void")


def test_decline_and_void(processor: StripeProcessor, localstripe_url: str) -> None:
    declined = processor.authorize(token="pm_card_chargeCustomerFail", amount_minor=900,
                                   currency="GBP", idempotency_key="t2:authorize")
    assert declined.status == "declined" and declined.decline_reason
    held = processor.authorize(token="pm_card_visa", amount_minor=900, currency="GBP",
                               idempotency_key="t3:authorize")
    processor.void(authorization_id=held.authorization_id, idempotency_key="t3:void")
    processor.void(authorization_id=held.authorization_id, idempotency_key="t3:void")
    assert intent(localstripe_url, held.authorization_id)["status"] == "canceled"
    with pytest.raises(PaymentError):
        processor.capture(authorization_id=held.authorization_id, amount_minor=100,
                          idempotency_key="t3:capture")
    with pytest.raises(PaymentError):
        processor.adjust(authorization_id=held.authorization_id, amount_minor=1000,
                         idempotency_key="t3:adjust")


def _store(tmp_path: Path, url: str) -> Container:
    settings = Settings(data_dir=tmp_path / "store", payment_processor="stripe",
                        stripe_api_key=KEY, stripe_api_base=url, entry_hold_minor=1000,
                        payment_reconcile_after_s=0)
    c = bootstrap(settings)
    c.catalogue.upsert(ITEMS)
    return c


def test_store_exit_reauthorizes_and_captures_on_stripe(tmp_path: Path,
                                                        localstripe_url: str) -> None:
    c = _store(tmp_path, localstripe_url)
    shopper = c.shoppers.register(display_name="Ada", payment_token="pm_card_visa")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[4].code,
                    quantity=4, device_id="cart-s", device_seq=0,
                    sensor_time=datetime.now(UTC))
    result = c.checkout.exit(session_id)
    assert result.status == "paid" and result.total_minor == 1500
    with c.db() as db:
        from storefront.db.models import PaymentOperation

        ops = db.query(PaymentOperation).order_by(PaymentOperation.created_at).all()
    assert [(op.purpose, op.state) for op in ops] == [
        ("hold", "succeeded"), ("reauthorize", "succeeded"),
        ("void_superseded", "succeeded"), ("capture", "succeeded")]
    first, second = ops[0].result_ref or "", ops[1].result_ref or ""
    assert intent(localstripe_url, first)["status"] == "canceled"
    assert intent(localstripe_url, second)["status"] == "succeeded"
    refund = c.processor.refund(capture_id=ops[3].result_ref or "", amount_minor=375,
                                idempotency_key=f"{session_id}:refund:1")
    assert refund.amount_minor == 375
    declined = c.shoppers.register(display_name="Bo", payment_token="pm_card_chargeCustomerFail")
    with pytest.raises(EntryRefused) as refused:
        c.gates.open_session(shopper_id=declined.id, entry_method="app")
    assert "declined" in refused.value.reason
    c.close()


class _Crash(BaseException):
    """The process dies right after Stripe captured."""


def test_crash_after_stripe_capture_is_reconciled_at_restart(
        tmp_path: Path, localstripe_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _store(tmp_path, localstripe_url)
    shopper = c.shoppers.register(display_name="Cy", payment_token="pm_card_visa")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[4].code,
                    quantity=2, device_id="cart-c", device_seq=0,
                    sensor_time=datetime.now(UTC))
    captured = StripeProcessor.capture

    def capture_then_die(self: StripeProcessor, **kwargs: object) -> None:
        captured(self, **kwargs)  # type: ignore[arg-type]
        raise _Crash

    monkeypatch.setattr(StripeProcessor, "capture", capture_then_die)
    with pytest.raises(_Crash):
        c.checkout.exit(session_id)
    monkeypatch.undo()
    c.close()
    restarted = _store(tmp_path, localstripe_url)  # reconciles: Stripe says captured
    result = restarted.checkout.exit(session_id)
    assert result.status == "paid" and result.total_minor == 750
    with restarted.db() as db:
        from storefront.db.models import Payment

        payment = db.query(Payment).filter(Payment.session_id == session_id).one()
    assert (payment.state, payment.captured_minor) == ("captured", 750)
    assert intent(localstripe_url, payment.processor_ref or "")["status"] == "succeeded"
    restarted.close()
