"""Shared fixtures: real data location, per-run PostgreSQL databases, service checks.

Tests that need a service or the real data skip with a reason when it is absent,
except under ``CI=true``, where they fail instead (see DEVELOPERS guide).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_skips import skip_or_fail

# The CLI's rich consoles wrap at the terminal width, or 80 columns without a terminal (and
# pytest-xdist workers have none); long reasons holding tmp paths then break inside words.
# One wide width for every test, set before the CLI modules build their consoles.
os.environ["COLUMNS"] = "200"

POSTGRES_ADMIN_URL = os.environ.get(
    "STOREFRONT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder from ``STOREFRONT_DATA_DIR`` (research data, never copied)."""
    value = os.environ.get("STOREFRONT_DATA_DIR")
    if not value:
        skip_or_fail("STOREFRONT_DATA_DIR is not set")
    path = Path(str(value))
    if not path.is_dir():
        skip_or_fail(f"STOREFRONT_DATA_DIR={path} is not a folder")
    return path


@pytest.fixture(scope="session")
def tongji_dir(data_dir: Path) -> Path:
    """The Tongji contactless palmprint ROI set (128x128 grey PNG, 300 palms x 20)."""
    path = data_dir / "palm" / "tongji-roi"
    if not (path / "manifest.csv").is_file():
        skip_or_fail(f"{path}/manifest.csv is missing")
    return path


@pytest.fixture(scope="session", autouse=True)
def _sqlite_head_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start-up of the service (``storefront.bootstrap``) on a new, empty SQLite file gets
    the schema by copying one database migrated to the head revision once per test
    process (SQLite's online backup), instead of replaying every migration for each test
    (1-3 s each). Anything else (a database already holding tables, another revision,
    PostgreSQL, the CLI run as a subprocess, the migration tests) runs the real
    migrations."""
    import sqlite3

    import sqlalchemy as sa

    from storefront import bootstrap
    from storefront.db.engine import make_engine

    real_upgrade = bootstrap.upgrade
    template: list[Path] = []

    def upgrade(engine: sa.Engine, revision: str = "head") -> None:
        if engine.url.get_backend_name() != "sqlite" or revision != "head" \
                or sa.inspect(engine).get_table_names():
            real_upgrade(engine, revision)
            return
        if not template:
            path = tmp_path_factory.mktemp("schema") / "head.db"
            source_engine = make_engine(f"sqlite:///{path}")
            real_upgrade(source_engine)
            source_engine.dispose()
            template.append(path)
        source = sqlite3.connect(template[0])
        target = engine.raw_connection()
        try:
            source.backup(target.driver_connection)
        finally:
            target.close()
            source.close()

    patch = pytest.MonkeyPatch()
    patch.setattr(bootstrap, "upgrade", upgrade)
    yield
    patch.undo()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _create_database(template: str | None = None) -> str:
    """A new PostgreSQL database (a copy of ``template`` when given); returns its name."""
    import sqlalchemy as sa

    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        # A test database needs no durability against an OS crash: commits need not wait
        # for the WAL to reach the disk (a per-database setting, not copied by TEMPLATE).
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit TO off'))
    admin.dispose()
    return name


def _drop_database(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _url(name: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _require_postgres() -> None:
    if not _port_open("127.0.0.1", 5432):
        skip_or_fail("PostgreSQL is not reachable on 127.0.0.1:5432")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards.

    Yields a SQLAlchemy URL (``postgresql+psycopg://...``).
    """
    _require_postgres()
    name = _create_database()
    try:
        yield _url(name)
    finally:
        _drop_database(name)


@pytest.fixture(scope="session")
def _migrated_template() -> Iterator[str]:
    """One database per test process migrated to the head revision, the template that
    :func:`migrated_postgres_url` copies (running the migrations once, not per test)."""
    _require_postgres()
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade

    name = _create_database()
    try:
        engine = make_engine(_url(name))
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # a template must have no connections when copied
        yield name
    finally:
        _drop_database(name)


@pytest.fixture
def migrated_postgres_url(_migrated_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database already at the head migration (a copy of the
    process's template), dropped afterwards: what ``storefront`` would create on first
    start, without running every migration again for each test. Yields its URL."""
    name = _create_database(_migrated_template)
    try:
        yield _url(name)
    finally:
        _drop_database(name)
