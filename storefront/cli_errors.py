"""Configuration problems of ``storefront`` commands as one line and exit code 2.

A database URL that does not parse, a database that cannot be reached or does not exist,
a driver that is not installed, a revision Alembic cannot find, a state path that cannot
be made or opened, a key file missing or unsafe, a key-encryption key that does not
open the store's data keys (:func:`require_kek_opens_store`), a refused Stripe key: each ends a
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
  taken for a new, empty store; with ``keys=True`` also a key-encryption key file that is
  missing or does not open the store's data keys.
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

console = Console(stderr=True)  # error lines go to stderr
P = ParamSpec("P")
R = TypeVar("R")

STORE_TABLES = ("alembic_version", "shoppers")
"""Tables every storefront database has (the migration table and one of revision 0001)."""


class ConfigError(Exception):
    """A configuration problem a command found; ``reason`` names the setting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword")
"""Query parameters of a database URL whose values are never shown (nor is the value of
any key containing one of :data:`SECRET_KEY_PARTS`)."""
SECRET_KEY_PARTS = ("pass", "secret", "token", "key")
MASK = "***"


def _secret_key(name: str) -> bool:
    """Whether a URL query parameter named ``name`` holds a secret."""
    from urllib.parse import unquote_plus

    key = unquote_plus(name).strip().lower()
    return key in SECRET_QUERY_KEYS or any(part in key for part in SECRET_KEY_PARTS)


def _url_parts(url: str) -> tuple[str, str | None, str, str | None] | None:
    """``url`` split as written: scheme, userinfo (None without ``@``), host part (host,
    port, database) and query (None without ``?``); None without ``://``.

    The userinfo ends at the LAST ``@`` before the query, so a password holding an
    unescaped ``@`` (``user:Pa@ss@host``) is all userinfo, unlike SQLAlchemy's parse
    (password ``Pa``, host ``ss@host``); a password holding ``?`` is found by the last
    ``@`` before the first ``/`` instead."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    q = rest.find("?")
    at = (rest if q < 0 else rest[:q]).rfind("@")
    if at < 0 and q >= 0:
        slash = rest.find("/")
        at = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    userinfo = rest[:at] if at >= 0 else None
    after = rest[at + 1:] if at >= 0 else rest
    host, qsep, query = after.partition("?")
    return scheme, userinfo, host, query if qsep else None


def _masked_userinfo(userinfo: str) -> str:
    """``user:***`` (a user name without a password is kept as it is)."""
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else user


def _masked_query(query: str) -> str:
    """``query`` with the values of secret-looking keys replaced by ``***``."""
    out = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        out.append(f"{key}={MASK}" if eq and _secret_key(key) else item)
    return "&".join(out)


def _secrets(url: str) -> list[tuple[str, str]]:
    """(text, replacement) pairs to scrub from any message about ``url``: the password as
    written and decoded (and its pieces between ``@``, which a driver may show as part of
    a host name), SQLAlchemy's parsed password, a parsed host holding ``@`` (a password
    piece before it), the values of secret-looking query keys. Texts shorter than four
    characters are left (replacing them everywhere would garble the message; the URL
    itself is masked by :func:`shown_url` whatever their length)."""
    from urllib.parse import unquote, unquote_plus

    found: set[str] = set()
    pairs: list[tuple[str, str]] = []
    parts = _url_parts(url)
    if parts is not None:
        _, userinfo, _, query = parts
        if userinfo is not None and ":" in userinfo:
            password = userinfo.partition(":")[2]
            for text in (password, unquote(password)):
                found.add(text)
                found.update(text.split("@"))
        for item in (query or "").split("&"):
            key, eq, value = item.partition("=")
            if eq and _secret_key(key):
                found.update((value, unquote_plus(value), unquote(value)))
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: the raw pieces above are all there is
        parsed = None
    if parsed is not None:
        if parsed.password:
            found.add(str(parsed.password))
        host = parsed.host or ""
        if "@" in host:
            before, _, real = host.rpartition("@")
            pairs.append((host, f"{MASK}@{real}"))
            found.update([before, *before.split("@")])
        for name, given in parsed.query.items():  # str, or a tuple when repeated
            if _secret_key(name):
                found.update([given] if isinstance(given, str) else given)
    pairs += [(text, MASK) for text in found if len(text) >= 4]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def shown_url(url: str) -> str:
    """``url`` as it may be printed: the userinfo's password masked (``user:***@``; all
    of the text between ``://`` and the last ``@`` before the host, so a password with
    an unescaped ``@`` is masked whole), and the values of secret-looking query keys
    (password, passwd, pwd, sslpassword, any key containing pass, secret, token or key)
    masked too; a string that is not a URL is not echoed (it may hold a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError):
        return "(not a database URL)"
    parts = _url_parts(url)
    if parts is None:
        return "(not a database URL)"
    scheme, userinfo, host, query = parts
    shown = (f"{scheme}://" + ("" if userinfo is None else f"{_masked_userinfo(userinfo)}@")
             + host + ("" if query is None else f"?{_masked_query(query)}"))
    for text, replacement in _secrets(url):  # e.g. a password repeated in another option
        if text != MASK and text not in (userinfo or "").partition(":")[0]:
            shown = shown.replace(text, replacement)
    return shown


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

    from identity.errors import IdentityError, TemplateDecryptionError
    from storefront.errors import StorefrontError

    if isinstance(exc, TemplateDecryptionError):
        return scrub(f"{exc.reason} (check STOREFRONT_KEY_FILE: a key file replaced or of "
                     f"another store, unless the stored data was altered)", settings)
    if isinstance(exc, ConfigError | StorefrontError | IdentityError):
        return scrub(str(exc.reason), settings)
    if isinstance(exc, NoSuchModuleError | ArgumentError | OperationalError | InterfaceError
                  | CommandError) or _driver_missing(exc):
        return _database_reason(exc, settings)
    if isinstance(exc, OSError) and exc.filename:
        return scrub(f"{os_reason(exc)} (check STOREFRONT_STATE_DIR, STOREFRONT_DATABASE_URL "
                     f"and the key and state file settings)", settings)
    return None


def reason_of(exc: BaseException, settings: Settings | None = None) -> str:
    """:func:`explain`'s line, else for any other database error (SQLAlchemyError) the
    database named with the driver's first line, else the error's own first line; the
    database password masked in every case. For commands that end on more errors than
    :func:`explain` knows (they exit 2 on any database error)."""
    from sqlalchemy.exc import SQLAlchemyError

    reason = explain(exc, settings)
    if reason is not None:
        return reason
    if isinstance(exc, SQLAlchemyError):
        return _database_reason(exc, settings)
    text = str(getattr(exc, "reason", None) or exc).strip().splitlines()
    return scrub(text[0] if text else type(exc).__name__, settings)


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
    """``text`` without the raw URL or its secrets (:func:`_secrets`): for driver errors
    (``failed to resolve host 'ssSecret@host'``) and belt and braces for the rest."""
    if not url:
        return text
    text = text.replace(url, shown_url(url))
    for secret, replacement in _secrets(url):
        text = text.replace(secret, replacement)
    return text


def scrub(text: str, settings: Settings | None = None) -> str:
    """``text`` with the configured database URL's secrets masked (:func:`_scrub`); the
    settings are read from the environment when None (unreadable settings: as is)."""
    try:
        if settings is None:
            from storefront.settings import Settings

            settings = Settings()
        url = settings.resolved_database_url()
    except Exception:  # noqa: BLE001 - no URL to hide
        return text
    return _scrub(text, url)


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
    """Print ``error: <reason>`` (one line: never wrapped, rich markup in it escaped, the
    configured database URL's secrets masked) and return the exit to raise (code 2)."""
    console.print(f"[red]error:[/red] {escape(scrub(reason))}", soft_wrap=True,
                  highlight=False)
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
    file missing (the store's secrets cannot be opened without it) or holding another KEK
    than the store's data keys need (:class:`KekMismatch`, :func:`require_kek_opens_store`)
    or that cannot be used (empty, truncated, not 32 bytes, readable by others). The
    database is only read, a SQLite file's ``-wal``/``-shm`` files left as found.

    Raises the database's own errors (a URL that does not parse, an unreachable server)
    for :func:`explain` to put in one line.
    """
    import sqlalchemy as sa

    from storefront.db.existing import reading_engine, require_database_file
    from storefront.errors import NotFound

    url = settings.resolved_database_url()
    require_database_file(url)
    engine = reading_engine(url)  # a SQLite file's -wal/-shm files left as found
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
    if keys:
        require_kek_opens_store(settings)


class KekMismatch(ConfigError):
    """The key-encryption key files are there and readable, but none holds the KEK that
    seals some of the store's keys or secrets (:mod:`storefront.kek_check`)."""


def require_kek_opens_store(settings: Settings) -> None:
    """Refuse (:class:`KekMismatch`) a key-encryption key that does not open what the
    store holds sealed under it (:func:`storefront.kek_check.require_kek_opens_store`)."""
    from storefront.kek_check import require_kek_opens_store as check

    check(settings)
