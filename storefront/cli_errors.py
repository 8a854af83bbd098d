"""Configuration problems of ``storefront`` commands as one line and exit code 2.

A database URL that does not parse, a database that cannot be reached or does not exist,
a driver that is not installed, a revision Alembic cannot find, a state path that cannot
be made or opened, a key file missing or unsafe, a refused Stripe key: each ends a
command with one line naming the setting (a password in a database URL is never shown:
SQLAlchemy's ``render_as_string(hide_password=True)``) instead of a traceback. Errors not
listed here keep their traceback: they are defects to see in full.

Use:

* ``@cli_errors`` under a Typer command's ``@app.command(...)`` (or ``with
  reported_errors():`` around part of one); :func:`storefront.cli.main` maps whatever a
  command lets through the same way, so the console script is covered either way;
* :func:`require_store` first in a command that only makes sense on an existing store:
  it refuses (NotFound, exit 2) a missing SQLite file or a database without the
  storefront schema, and creates nothing, so a mistyped ``STOREFRONT_STATE_DIR`` is not
  taken for a new, empty store.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from storefront.settings import Settings

console = Console()
P = ParamSpec("P")
R = TypeVar("R")

STORE_TABLES = ("alembic_version", "shoppers")
"""Tables every storefront database has (the migration table and one of revision 0001)."""


class ConfigError(Exception):
    """A configuration problem a command found; ``reason`` names the setting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shown_url(url: str) -> str:
    """``url`` as it may be printed: the password masked (``***``); a string that is not
    a URL is not echoed (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not a database URL)"


def database_setting(settings: Settings) -> str:
    """The setting that chose the database: STOREFRONT_DATABASE_URL when set, else
    STOREFRONT_STATE_DIR (the SQLite file ``<state dir>/storefront.db``)."""
    return "STOREFRONT_DATABASE_URL" if settings.database_url else "STOREFRONT_STATE_DIR"


def explain(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line for a known configuration error, or None for anything else.

    ``settings`` names the database in database errors (read from the environment when
    None and needed). Never includes a database password.
    """
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

    from identity.errors import IdentityError
    from storefront.errors import StorefrontError

    if isinstance(exc, ConfigError | StorefrontError | IdentityError):
        return str(exc.reason)
    if isinstance(exc, NoSuchModuleError | ArgumentError | OperationalError | InterfaceError
                  | CommandError) or _driver_missing(exc):
        return _database_reason(exc, settings)
    if isinstance(exc, OSError) and exc.filename:
        return (f"{os_reason(exc)} (check STOREFRONT_STATE_DIR, STOREFRONT_DATABASE_URL and "
                f"the key and state file settings)")
    return None


def _database_reason(exc: BaseException, settings: Settings | None) -> str:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    url, setting = None, "STOREFRONT_DATABASE_URL"
    try:
        if settings is None:
            from storefront.settings import Settings

            settings = Settings()
        url, setting = settings.resolved_database_url(), database_setting(settings)
    except Exception:  # noqa: BLE001 - only to name the database; the error is the point
        pass
    where = f"{shown_url(url)} ({setting})" if url else setting
    if isinstance(exc, NoSuchModuleError):
        why = f"no database dialect or driver for {where}: {exc}"
    elif isinstance(exc, ArgumentError):
        why = (f"{setting} is not a usable database URL ({exc}); e.g. "
               f"postgresql+psycopg://user@host:5432/db or sqlite:////path/storefront.db")
    elif isinstance(exc, CommandError):
        why = f"cannot migrate the database {where}: {exc}"
    elif isinstance(exc, ModuleNotFoundError):
        why = f"the database driver for {where} is not installed ({exc})"
    else:
        detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        first = str(detail).strip().splitlines()
        why = f"cannot use the database {where}: {first[0] if first else type(detail).__name__}"
    return _scrub(why, url)


def _scrub(text: str, url: str | None) -> str:
    """``text`` without the raw URL or its password (belt and braces: the messages used
    above never hold them)."""
    if not url:
        return text
    text = text.replace(url, shown_url(url))
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001 - not a URL: nothing more to hide
        return text
    if password and len(str(password)) >= 4:
        text = text.replace(str(password), "***")
    return text


def _driver_missing(exc: BaseException) -> bool:
    """True for an ImportError raised while SQLAlchemy imported a database driver (e.g.
    ``mysql://`` without MySQLdb)."""
    if not isinstance(exc, ImportError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/sqlalchemy/dialects/" in name or tb.tb_frame.f_code.co_name == "import_dbapi":
            return True
        tb = tb.tb_next
    return False


def os_reason(exc: OSError) -> str:
    """Why a path could not be used, in a few words: ``<path> is not a folder`` for a
    regular file met where a folder was needed, else the system's reason and the path."""
    name = exc.filename
    if isinstance(exc, NotADirectoryError | FileExistsError) and name:
        parts = Path(name)
        for part in (parts, *parts.parents):  # the file that stands in the way
            if part.exists() and not part.is_dir():
                return f"{part} is not a folder"
    return f"{exc.strerror or exc}: {name}" if name else str(exc.strerror or exc)


def fail(reason: str) -> typer.Exit:
    """Print ``error: <reason>`` (one line) and return the exit to raise (code 2)."""
    console.print(f"[red]error:[/red] {escape(reason)}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


@contextmanager
def reported_errors(settings: Settings | None = None) -> Iterator[None]:
    """Known configuration errors raised in the block end the command: one line, exit 2."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        reason = explain(exc, settings)
        if reason is None:
            raise
        raise fail(reason) from exc


def cli_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a Typer command (below ``@app.command``): known configuration errors end
    it with one line and exit 2 (:func:`explain`)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with reported_errors():
            return command(*args, **kwargs)

    return run


def require_store(settings: Settings, *, keys: bool = False) -> None:
    """Refuse (NotFound, exit 2 under :func:`cli_errors`) a store that does not exist,
    creating nothing: the default SQLite file missing (a mistyped STOREFRONT_STATE_DIR),
    a database without the storefront schema, and with ``keys`` the key-encryption key
    file missing (the store's secrets cannot be opened without it).

    Raises the database's own errors (a URL that does not parse, an unreachable server)
    for :func:`explain` to put in one line.
    """
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from storefront.db.existing import require_database_file
    from storefront.errors import NotFound

    url = settings.resolved_database_url()
    require_database_file(url)
    engine = sa.create_engine(url) if make_url(url).get_backend_name() != "sqlite" \
        else sa.create_engine(url, connect_args={"timeout": 30})
    try:
        tables = set(sa.inspect(engine).get_table_names())
    except sa.exc.DatabaseError as exc:  # e.g. a file that is not a SQLite database
        if isinstance(exc.orig, sqlite3.DatabaseError) \
                and not isinstance(exc.orig, sqlite3.OperationalError):
            raise NotFound(f"{shown_url(url)} is not a storefront database ({exc.orig}; "
                           f"check {database_setting(settings)}); nothing was changed") from exc
        raise
    finally:
        engine.dispose()
    if not set(STORE_TABLES) <= tables:
        raise NotFound(f"the database {shown_url(url)} has no storefront schema (check "
                       f"{database_setting(settings)}; `storefront db upgrade` or "
                       f"`storefront serve` creates one); nothing was created")
    kek = settings.resolved_key_file()
    if keys and not Path(kek).is_file():
        raise NotFound(f"no key-encryption key at {kek} (check STOREFRONT_KEY_FILE or "
                       f"STOREFRONT_STATE_DIR); nothing was created")
