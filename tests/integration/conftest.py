"""Fixtures shared by integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.integration import localstripe


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The database URL to test against: None (the embedded SQLite default, in the test's
    state folder) or a PostgreSQL database already at the head migration
    (``migrated_postgres_url``; skipped when PostgreSQL is down, except under CI=true).
    Tests of the migrations themselves use the empty ``postgres_url``."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("migrated_postgres_url")


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    """A localstripe server (a stateful fake of the Stripe API) on a free loopback port
    for the module's tests; yields its base URL."""
    with localstripe.serve() as url:
        yield url


@pytest.fixture
def attempt_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a SQLite file holding only the ``failed_attempts`` table (the counters
    of storefront.security.attempts_sql, without the rest of the schema)."""
    from storefront.db.engine import make_engine
    from storefront.db.models import FailedAttempt

    engine = make_engine(f"sqlite:///{tmp_path / 'attempts.db'}")
    FailedAttempt.__table__.create(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def migrated_sessions(tmp_path: Path, database: str | None) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated store database: a SQLite file, or PostgreSQL (``database``)."""
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade

    engine = make_engine(database or f"sqlite:///{tmp_path / 'attempts.db'}")
    upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()
