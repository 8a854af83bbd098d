"""Fixtures shared by integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
