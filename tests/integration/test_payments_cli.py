"""`storefront payments reconcile` settles a call a crashed process left in flight."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from storefront.bootstrap import bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.cli import app
from storefront.db.models import Payment, PaymentOperation
from storefront.payments import Capture, SimulatedProcessor
from storefront.settings import Settings


class _Crash(BaseException):
    """The process dies right after the processor captured."""


class _DiesAfterCapture(SimulatedProcessor):
    def capture(self, *, authorization_id: str, amount_minor: int,
                idempotency_key: str) -> Capture:
        super().capture(authorization_id=authorization_id, amount_minor=amount_minor,
                        idempotency_key=idempotency_key)
        raise _Crash


def test_cli_reconcile_completes_an_orphaned_capture(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "processor.db"
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("STOREFRONT_PAYMENT_SIM_STATE", str(state))
    monkeypatch.setenv("STOREFRONT_PAYMENT_DECLINE_RATE", "0")
    monkeypatch.setenv("STOREFRONT_ENTRY_HOLD_MINOR", "2000")
    settings = Settings()
    c = bootstrap(settings, processor=_DiesAfterCapture(seed=7, decline_rate=0.0,
                                                        state_path=state))
    item = builtin_items()[0]
    c.catalogue.upsert([item])
    shopper = c.shoppers.register(display_name="Ada", payment_token="tok_ada")
    session_id = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
    c.ingest.record(session_id=session_id, kind="picked", product_code=item.code, quantity=2,
                    device_id="cart-1", device_seq=0, sensor_time=datetime.now(UTC))
    with pytest.raises(_Crash):
        c.checkout.exit(session_id)
    c.close()
    result = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["looked_up"], report["completed"], report["still_unknown"]) == (1, 1, 0)
    engine = sa.create_engine(settings.resolved_database_url())
    with engine.connect() as db:
        assert db.execute(sa.select(Payment.state, Payment.captured_minor)).one() == (
            "captured", 2 * item.unit_price_minor)
        assert "in_flight" not in db.scalars(sa.select(PaymentOperation.state)).all()
    engine.dispose()
    bad = CliRunner().invoke(app, ["payments", "reconcile", "--older-than", "-1"])
    assert bad.exit_code == 2
