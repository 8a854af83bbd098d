"""Apply the Alembic migrations programmatically (``storefront db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic config pointing at the packaged migrations and ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (default: latest)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The latest revision shipped with this version of storefront."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
