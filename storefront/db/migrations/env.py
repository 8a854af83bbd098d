"""Alembic environment: runs migrations on the engine handed over by storefront.db.migrate."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

import storefront.devices.models  # noqa: F401  (registers the device tables on Base)
from cart.sql_event_store import metadata as cart_metadata
from storefront.db.models import Base

target_metadata = [Base.metadata, cart_metadata]


def run_migrations_online() -> None:
    """Run the migrations inside one transaction on the configured engine."""
    engine = context.config.attributes.get("engine")
    if engine is None:
        url = context.config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine or sqlalchemy.url given to Alembic")
        engine = sa.create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
