"""A Stripe API key that Stripe refuses (HTTP 401/403) is logged at ERROR once per process
and key; later refusals of that key go to DEBUG, with a WARNING counting them at the
10th, 100th, ... refusal, so a store with a bad key does not flood its log with one ERROR
per payment call and retry. The payment itself is still left pending (nothing owed)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import stripe

from storefront.bootstrap import bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.payments.base import PaymentPending
from storefront.payments.stripe_adapter import (
    ProcessorCredentialsRefused,
    StripeProcessor,
    refused_keys,
)
from storefront.settings import Settings

LOGGER = "storefront.payments.stripe_adapter"
ITEMS = builtin_items()


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    refused_keys.clear()
    yield
    refused_keys.clear()


def _refusing(api_key: str, status: int = 401) -> StripeProcessor:
    """A processor whose every Stripe call is refused with ``status`` (no network)."""
    def refuse(*_args: object, **_kwargs: object) -> None:
        error = stripe.AuthenticationError if status == 401 else stripe.PermissionError
        raise error("Invalid API Key provided", http_status=status)

    processor = StripeProcessor(api_key=api_key, api_base="http://127.0.0.1:9", timeout_s=1)
    intents = SimpleNamespace(create=refuse, retrieve=refuse, cancel=refuse, capture=refuse,
                              list=refuse, search=refuse, increment_authorization=refuse)
    processor._client = SimpleNamespace(  # type: ignore[assignment]
        v1=SimpleNamespace(payment_intents=intents,
                           refunds=SimpleNamespace(create=refuse, list=refuse)))
    return processor


def _authorize(processor: StripeProcessor, n: int) -> None:
    with pytest.raises(ProcessorCredentialsRefused):
        processor.authorize(token="pm_card_visa", amount_minor=500, currency="GBP",
                            idempotency_key=f"k{n}:authorize")


def _levels(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [r.levelno for r in caplog.records if r.name == LOGGER]


def test_one_error_per_key_then_debug(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk_test_refused_one"
    processor = _refusing(key)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for n in range(3):
            _authorize(processor, n)
        with pytest.raises(ProcessorCredentialsRefused):
            processor.void(authorization_id="pi_1", idempotency_key="k:void")
    assert _levels(caplog) == [logging.ERROR, logging.DEBUG, logging.DEBUG, logging.DEBUG]
    first = caplog.records[0].getMessage()
    assert "Stripe refused STOREFRONT_STRIPE_API_KEY (HTTP 401" in first
    assert "later refusals of this key are logged at DEBUG" in first
    assert "refusal 4 in this process" in caplog.records[-1].getMessage()
    assert all(key not in r.getMessage() for r in caplog.records)


def test_once_per_process_and_key_not_per_processor(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        _authorize(_refusing("sk_test_refused_two"), 1)
        _authorize(_refusing("sk_test_refused_two"), 2)  # e.g. a second container
        _authorize(_refusing("sk_test_refused_three", status=403), 3)  # another key
    assert _levels(caplog) == [logging.ERROR, logging.DEBUG, logging.ERROR]
    assert "(HTTP 403" in caplog.records[2].getMessage()


def test_a_counted_warning_at_the_10th_and_100th_refusal(
        caplog: pytest.LogCaptureFixture) -> None:
    processor = _refusing("sk_test_refused_many")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for n in range(100):
            _authorize(processor, n)
    levels = _levels(caplog)
    assert len(levels) == 100 and levels.count(logging.ERROR) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert levels[9] == levels[99] == logging.WARNING and len(warnings) == 2
    assert "refused STOREFRONT_STRIPE_API_KEY 10 times in this process" in warnings[0]
    assert "100 times" in warnings[1]


def test_exits_with_a_refused_key_stay_pending_with_one_error(
        tmp_path: Path, localstripe_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """End to end against localstripe (which refuses keys not starting with ``sk_``):
    several exits, each with its payment retries, log one ERROR."""
    settings = Settings(data_dir=tmp_path / "store", payment_processor="stripe",
                        stripe_api_key="refused-key-for-the-log-test",
                        stripe_api_base=localstripe_url, payment_timeout_s=5,
                        payment_retry_attempts=3, payment_reconcile_after_s=0)
    c = bootstrap(settings)
    try:
        c.catalogue.upsert(ITEMS)
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            for n in range(3):
                shopper = c.shoppers.register(display_name=f"S{n}", payment_token="pm_card_visa")
                session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
                c.ingest.record(session_id=session_id, kind="picked",
                                product_code=ITEMS[4].code, quantity=1, device_id="cart-l",
                                device_seq=n, sensor_time=datetime.now(UTC))
                with pytest.raises(PaymentPending, match="refused the store's API key"):
                    c.checkout.exit(session_id)
                assert c.read_model.get(session_id).status == "exited"
    finally:
        c.close()
    levels = _levels(caplog)
    assert len(levels) > 3, levels  # more refusals than exits: each exit's calls and retries
    assert levels.count(logging.ERROR) == 1, levels
    assert set(levels) <= {logging.ERROR, logging.WARNING, logging.DEBUG}
