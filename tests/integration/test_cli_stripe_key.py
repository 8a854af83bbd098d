"""A Stripe API key that Stripe refuses is the store's configuration problem, not the
shopper's: the adapter raises ProcessorCredentialsRefused (a ProcessorUnavailable, logged
at ERROR), the exit is left ``payment_pending`` (not sent to the staffed checkout, nothing
owed), and ``storefront serve`` refuses to start with it. Against localstripe, which
refuses keys that do not start with ``sk_`` (HTTP 401)."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe

from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.cli import main
from storefront.payments.base import PaymentPending, ProcessorUnavailable
from storefront.payments.stripe_adapter import (
    ProcessorCredentialsRefused,
    StripeProcessor,
    _translate,
    refused_keys,
)
from storefront.settings import Settings
from tests.integration.localstripe import KEY

ITEMS = builtin_items()
BAD_KEY = "garbage-key"


@pytest.fixture(autouse=True)
def _first_refusal_logged_at_error() -> None:
    """Each test starts as a new process would: no key refused yet, so the first refusal
    is logged at ERROR whatever ran before."""
    refused_keys.clear()


def test_a_refused_key_is_not_a_refusal_of_the_payment(
        localstripe_url: str, caplog: pytest.LogCaptureFixture) -> None:
    bad = StripeProcessor(api_key=BAD_KEY, api_base=localstripe_url, timeout_s=5)
    with caplog.at_level(logging.ERROR, logger="storefront.payments.stripe_adapter"), \
            pytest.raises(ProcessorCredentialsRefused) as refused:
        bad.authorize(token="pm_card_visa", amount_minor=500, currency="GBP",
                      idempotency_key="k1:authorize")
    assert isinstance(refused.value, ProcessorUnavailable)
    assert "refused the store's API key (HTTP 401)" in refused.value.reason
    assert "not the shopper's card" in refused.value.reason
    assert any("Stripe refused STOREFRONT_STRIPE_API_KEY" in r.getMessage()
               and r.levelno == logging.ERROR for r in caplog.records)
    with pytest.raises(ProcessorCredentialsRefused):
        bad.check_credentials()
    StripeProcessor(api_key=KEY, api_base=localstripe_url, timeout_s=5).check_credentials()


def test_a_key_without_permission_is_a_configuration_problem_too() -> None:
    """HTTP 403 (a restricted key lacking a permission); localstripe has no such keys."""

    def forbidden() -> None:
        raise stripe.PermissionError("The provided key does not have the required "
                                     "permissions", http_status=403)

    with pytest.raises(ProcessorCredentialsRefused, match="HTTP 403"):
        _translate(forbidden)


def _store(tmp_path: Path, url: str, key: str) -> Container:
    settings = Settings(data_dir=tmp_path / "store", payment_processor="stripe",
                        stripe_api_key=key, stripe_api_base=url, payment_timeout_s=5,
                        payment_reconcile_after_s=0)
    c = bootstrap(settings)
    c.catalogue.upsert(ITEMS)
    return c


def test_an_exit_with_a_refused_key_is_pending_and_the_shopper_owes_nothing(
        tmp_path: Path, localstripe_url: str) -> None:
    c = _store(tmp_path, localstripe_url, BAD_KEY)
    try:
        shopper = c.shoppers.register(display_name="Ada", payment_token="pm_card_visa")
        session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
        c.ingest.record(session_id=session_id, kind="picked", product_code=ITEMS[4].code,
                        quantity=2, device_id="cart-k", device_seq=0,
                        sensor_time=datetime.now(UTC))
        with pytest.raises(PaymentPending, match="refused the store's API key"):
            c.checkout.exit(session_id)
        view = c.read_model.get(session_id)
        assert view.status == "exited" and not view.staffed_reason
        later = datetime.now(UTC) + timedelta(days=1)  # long past the unpaid grace
        assert c.checkout.payment.owed(shopper_id=shopper.id, now=later,
                                       grace=timedelta(seconds=0)) is None
        assert c.checkout.staffed_queue() == []
    finally:
        c.close()
    fixed = _store(tmp_path, localstripe_url, KEY)  # the key corrected, the exit retried
    try:
        result = fixed.checkout.exit(session_id)
        assert result.status == "paid" and result.total_minor == 750
    finally:
        fixed.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Settings for ``storefront serve`` with Stripe; uvicorn.run recorded, not run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_PROCESSOR", "stripe")
    monkeypatch.setenv("STOREFRONT_PAYMENT_TIMEOUT_S", "3")
    monkeypatch.setattr("sys.argv", ["storefront", "serve", "--port", str(_free_port())])
    started: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(kw))
    return started


def test_serve_refuses_a_key_stripe_refuses(
        localstripe_url: str, serve_env: list[object], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STOREFRONT_STRIPE_API_BASE", localstripe_url)
    monkeypatch.setenv("STOREFRONT_STRIPE_API_KEY", BAD_KEY)
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    assert stop.value.code == 2 and serve_env == []
    assert out.err.startswith("error: STOREFRONT_STRIPE_API_KEY was refused by Stripe (HTTP 401")
    assert len(out.err.strip().splitlines()) == 1 and BAD_KEY not in out.out + out.err
    assert "Traceback" not in out.out + out.err


def test_serve_starts_with_a_good_key_and_only_warns_when_stripe_is_out_of_reach(
        localstripe_url: str, serve_env: list[object], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STOREFRONT_STRIPE_API_KEY", KEY)
    monkeypatch.setenv("STOREFRONT_STRIPE_API_BASE", localstripe_url)
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0 and len(serve_env) == 1
    assert "warning" not in capsys.readouterr().out
    monkeypatch.setenv("STOREFRONT_STRIPE_API_BASE", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0 and len(serve_env) == 2
    assert "warning: Stripe could not be asked" in capsys.readouterr().out
