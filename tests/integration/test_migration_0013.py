"""Migration 0013 (privacy and security hardening): its downgrade refuses to turn unused
enrolment codes into gate entry codes, and otherwise drops its columns (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from storefront.db.engine import make_engine
from storefront.db.migrate import alembic_config, current_revision, upgrade


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as db:
        return {col["name"] for col in sa.inspect(db).get_columns(table)}


def test_downgrade_is_refused_while_an_enrolment_code_is_unused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        with engine.begin() as db:
            db.execute(sa.text(
                "INSERT INTO entry_codes (code_hash, shopper_id, issued_at, expires_at, purpose)"
                " VALUES (:h, 'shp_a', :now, :later, 'enrolment')"),
                {"h": "a" * 64, "now": now, "later": now + timedelta(minutes=10)})
        with pytest.raises(RuntimeError, match="1 unused enrolment code"):
            command.downgrade(alembic_config(engine), "0012")
        assert current_revision(engine) == "0013"  # the later steps down went; 0013's did not
        assert "purpose" in _columns(engine, "entry_codes")
        with engine.begin() as db:  # the code was used: nothing can misread it any more
            db.execute(sa.text("UPDATE entry_codes SET used_at = :now"), {"now": now})
        command.downgrade(alembic_config(engine), "0012")
        assert current_revision(engine) == "0012"
        assert "purpose" not in _columns(engine, "entry_codes")
        assert "recorded_by" not in _columns(engine, "biometric_consents")
        assert "totp_last_step" not in _columns(engine, "staff_accounts")
        assert "expires_at" not in _columns(engine, "privacy_exports")
        upgrade(engine)
        assert _columns(engine, "entry_codes") >= {"purpose"}
        with engine.connect() as db:  # the code written before keeps its purpose default
            purposes = db.execute(sa.text("SELECT purpose FROM entry_codes")).scalars().all()
        assert purposes == ["entry"]
    finally:
        engine.dispose()
