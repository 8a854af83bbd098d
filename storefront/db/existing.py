"""Open a storefront database that must already exist (CLI commands that only read or
tidy one): nothing is created on a wrong URL or a missing SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.errors import NotFound


def require_database_file(url: str) -> None:
    """Raise NotFound when ``url`` names a SQLite file that does not exist (other
    databases are checked by :func:`existing_database`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise NotFound(f"no database at {parsed.database} (check STOREFRONT_STATE_DIR or "
                       f"STOREFRONT_DATABASE_URL); nothing was created")


@contextmanager
def existing_database(url: str, table: str, what: str) -> Iterator[sa.Engine]:
    """An engine on the database at ``url``, migrated to the latest revision, disposed of
    on exit. Raises NotFound (before creating anything) for a missing SQLite file or a
    database without ``table`` (``what`` names it in the reason: not a storefront
    database?)."""
    require_database_file(url)
    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table(table):
            shown = make_url(url).render_as_string(hide_password=True)
            raise NotFound(f"the database {shown} has no {what} table (not a storefront "
                           f"database?)")
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
