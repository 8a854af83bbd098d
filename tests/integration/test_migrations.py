"""Alembic migrations produce exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import storefront.devices.models  # noqa: F401  (the device tables live on the same Base)
from cart.sql_event_store import metadata as cart_metadata
from storefront.db.engine import make_engine
from storefront.db.migrate import current_revision, head_revision, upgrade
from storefront.db.models import Base


def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        upgrade(engine)  # idempotent
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            assert compare_metadata(context, [Base.metadata, cart_metadata]) == []
    finally:
        engine.dispose()


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'new' / 'sf.db'}")


@pytest.mark.postgres
def test_migrations_on_postgres(postgres_url: str) -> None:
    _check(postgres_url)
