"""``storefront privacy sweep`` on a store's data folder: deletes palm data unused for
longer than the default 730 days, and a second run deletes nothing more."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import bootstrap
from storefront.cli import app
from storefront.settings import Settings


def test_sweep_command_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    palms = SyntheticPalms(99)
    long_ago = datetime.now(UTC) - timedelta(days=800)
    container = bootstrap(Settings(data_dir=tmp_path), clock=lambda: long_ago)
    shopper = container.shoppers.register(display_name="Old", payment_token="tok_old")
    container.shoppers.enrol_palm(shopper_id=shopper.id,
                                  images=[encode_png(palms.capture(0, k)) for k in range(3)],
                                  consent_text_version="2026-11")
    container.close()
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    runs = [CliRunner().invoke(app, ["privacy", "sweep"]) for _ in range(2)]
    assert [r.exit_code for r in runs] == [0, 0], [r.output for r in runs]
    first, second = (json.loads(r.output) for r in runs)
    assert first == {"palms_deleted_for": 1, "templates_deleted": 3, "trips_detached": 0,
                     "archives_deleted": 0, "codes_deleted": 0,
                     "failed_attempts_deleted": 0}
    assert second == {"palms_deleted_for": 0, "templates_deleted": 0, "trips_detached": 0,
                      "archives_deleted": 0, "codes_deleted": 0,
                     "failed_attempts_deleted": 0}
