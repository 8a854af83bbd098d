"""The ``storefront`` command line (Typer): demo, serve, db."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from storefront.cli_audit import audit_app
from storefront.cli_catalog import catalog_app
from storefront.cli_devices import devices_app
from storefront.cli_errors import (
    ConfigError,
    cli_errors,
    database_setting,
    explain,
    fail,
    os_reason,
    reported_errors,
    require_kek_opens_store,
    shown_url,
)
from storefront.cli_identity import identity_app
from storefront.cli_keys import keys_app
from storefront.cli_privacy import privacy_app
from storefront.cli_staff import staff_app
from storefront.errors import StorefrontError

if TYPE_CHECKING:
    from storefront.settings import Settings
from storefront.payments.cli import payments_app

app = typer.Typer(help="storefront: checkout-free store backend with palm identity.",
                  no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")
app.add_typer(payments_app, name="payments")
app.add_typer(identity_app, name="identity")
app.add_typer(devices_app, name="devices")
app.add_typer(audit_app, name="audit")
app.add_typer(staff_app, name="staff")
app.add_typer(privacy_app, name="privacy")
app.add_typer(keys_app, name="keys")
console = Console()


@app.command()
def demo(
    palms: Annotated[Path | None, typer.Option(help="Folder with manifest.csv of palm images.")]
    = None,
    baskets: Annotated[Path | None, typer.Option(help="Online Retail II CSV (gzip allowed).")]
    = None,
    shoppers: Annotated[int, typer.Option(min=1, max=100_000, help="Number of shoppers.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 2026,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Keep the demo store's data here (default: a temporary folder); a new or empty "
             "folder, not one holding a previous demo's store.")] = None,
    decline_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                help="Share of card authorizations declined.")]
    = 0.05,
    broker: Annotated[str | None, typer.Option(
        help="Run the devices through this MQTT broker (mqtt://host:port).")] = None,
) -> None:
    """Run a whole store day: enrol, enter by palm, shop, exit and pay."""
    from storefront.demo.command import run_demo

    try:
        run_demo(palms=palms, baskets=baskets, shoppers=shoppers, seed=seed, report_path=report,
                 data_dir=data_dir, decline_rate=decline_rate, console=console,
                 broker=broker)
    except StorefrontError as exc:
        raise fail(exc.reason) from exc


@app.command()
@cli_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default from settings).")]
    = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings).")] = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs); migrations are applied on start.

    Before the server starts, the configuration is checked as start-up will use it (the
    listen address first, then the key files that are there, the database and its
    migration state, the state folder, the key files again (in development a missing one
    is made) and whether the key-encryption key opens the store's data keys, the payment
    processor, and last the migrations): a problem ends the command with one line naming
    the setting and exit code 2. Nothing is created when it refuses on the listen
    address, a key file or the database, and the state folder is left as it was found
    (no SQLite ``-wal``/``-shm`` files either).
    """
    import uvicorn

    from storefront.api.app import create_app
    from storefront.settings import Settings

    settings = Settings()
    host, port = host or settings.host, port or settings.port
    _preflight(settings, host, port)
    uvicorn.run(create_app(settings=settings), host=host, port=port)


def _preflight(settings: Settings, host: str, port: int) -> None:
    """What start-up (:func:`storefront.bootstrap.bootstrap`, run later in the server's
    lifespan, where a failure is a traceback) needs, built and checked here first; each
    problem raises ConfigError (or typer.Exit) naming its setting.

    Order: the listen address (:func:`_check_listen`), the database URL and the Stripe
    key setting, the key files that are there, read only (:func:`_check_keys` with
    ``present_only``: a bad key file is refused before any database connection), the
    database itself, read only (:func:`_check_database_state`: reachable, a migration
    state this version knows; a SQLite file's folder left as found), and only then what
    start-up creates (the state folder, in development the key files, the simulated
    processor's state file, the SQLite file, the schema: :func:`_check_database`
    migrates)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    _check_listen(host, port)
    url = settings.resolved_database_url()
    try:
        make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"STOREFRONT_DATABASE_URL is not a database URL ({exc}); e.g. "
                          f"postgresql+psycopg://user@host:5432/db") from exc
    if settings.payment_processor == "stripe" and settings.stripe_api_key is None:
        raise ConfigError("STOREFRONT_STRIPE_API_KEY is required when "
                          "STOREFRONT_PAYMENT_PROCESSOR=stripe")
    _check_keys(settings, present_only=True)  # before any database connection
    _check_database_state(settings)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"STOREFRONT_STATE_DIR={settings.data_dir} cannot be used: "
                          f"{os_reason(exc)}") from exc
    _check_keys(settings)
    _check_processor(settings)
    _check_database(settings)


def _check_listen(host: str, port: int) -> None:
    """Refuse (ConfigError) a listen address the server could not bind: bind and close a
    socket on each address ``host`` resolves to, as the server's listener would
    (SO_REUSEADDR as asyncio sets it on POSIX: a port held only by connections in
    TIME_WAIT is usable; one another process listens on is not)."""
    import os
    import socket

    where = f"{host}:{port} (--host/--port or STOREFRONT_HOST/STOREFRONT_PORT)"
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {where}: the host is not known "
                          f"({getattr(exc, 'strerror', None) or exc})") from exc
    for family, kind, proto, _, address in {(a[0], a[1], a[2], None, a[4])
                                            for a in addresses}:
        try:
            with socket.socket(family, kind, proto) as sock:
                if os.name == "posix":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {where}: "
                              f"{exc.strerror or exc}") from exc


def _check_database_state(settings: Settings) -> None:
    """The database as start-up will find it, read only and creating nothing: a server
    that can be reached, a database that exists, and a migration state this version
    knows (not one written by a newer version). A SQLite file that does not exist yet is
    fine (start-up creates it) when nothing but missing folders stands in its way.
    Raises ConfigError, or the driver's error for :func:`storefront.cli_errors.explain`."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = settings.resolved_database_url()
    parsed = make_url(url)
    with reported_errors(settings):
        if parsed.get_backend_name() == "sqlite":
            _check_sqlite_state(settings, url, Path(parsed.database or ""))
            return
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                _known_revisions(conn)
        finally:
            engine.dispose()


def _check_sqlite_state(settings: Settings, url: str, path: Path) -> None:
    """:func:`_check_database_state` for a SQLite file (read only, if it exists, and its
    ``-wal``/``-shm`` files left as found: :func:`storefront.db.existing.reading_engine`)."""
    import sqlalchemy as sa

    from storefront.db.existing import reading_engine

    if not str(path) or str(path) == ":memory:":
        return
    if not path.exists():
        if not settings.database_url:  # under the state folder: checked when made
            return
        part = path.parent
        while not part.exists() and part.parent != part:
            part = part.parent
        if not part.is_dir():
            raise ConfigError(f"{database_setting(settings)}: the database {shown_url(url)} "
                              f"cannot be used: {part} is not a folder")
        return
    engine = reading_engine(url)
    try:
        with engine.connect() as conn:
            _known_revisions(conn)
    except sa.exc.DatabaseError as exc:
        if isinstance(exc.orig, sqlite3.DatabaseError) \
                and not isinstance(exc.orig, sqlite3.OperationalError):
            raise ConfigError(f"{database_setting(settings)}: {shown_url(url)} is not a "
                              f"storefront database ({exc.orig}); nothing was "
                              f"changed") from exc
        raise
    finally:
        engine.dispose()


def _known_revisions(conn: object) -> None:
    """Raise Alembic's CommandError (for :func:`storefront.cli_errors.explain`: cannot
    migrate) when the database is at a revision this version does not ship."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storefront.db.migrate import MIGRATIONS_DIR

    heads = MigrationContext.configure(conn).get_current_heads()  # type: ignore[arg-type]
    if heads:
        ScriptDirectory(str(MIGRATIONS_DIR)).get_revisions(heads)


def _check_processor(settings: Settings) -> None:
    """Build the payment processor as start-up will; for Stripe, one authenticated request
    (a refused key stops here; Stripe out of reach is only warned about: the service
    starts and payments wait, as during any outage)."""
    from storefront.payments.base import ProcessorUnavailable
    from storefront.payments.factory import build_processor

    try:
        processor = build_processor(settings)
    except OSError as exc:
        raise ConfigError(f"STOREFRONT_PAYMENT_SIM_STATE={settings.payment_sim_state} "
                          f"cannot be used: {os_reason(exc)}") from exc
    except sqlite3.Error as exc:
        raise ConfigError(f"STOREFRONT_PAYMENT_SIM_STATE={settings.payment_sim_state} "
                          f"cannot be used: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.payment_processor != "stripe":
        close = getattr(processor, "close", None)
        if close is not None:
            close()
        return
    from storefront.payments.stripe_adapter import (
        ProcessorCredentialsRefused,
        StripeProcessor,
    )

    assert isinstance(processor, StripeProcessor)
    try:
        processor.check_credentials()
    except ProcessorCredentialsRefused as exc:
        status = getattr(exc.__cause__, "http_status", None)
        raise ConfigError(f"STOREFRONT_STRIPE_API_KEY was refused by Stripe (HTTP {status}: "
                          f"a wrong, revoked or expired key, or one without permission to "
                          f"read PaymentIntents)") from exc
    except ProcessorUnavailable as exc:
        console.print(f"[yellow]warning:[/yellow] Stripe could not be asked whether "
                      f"STOREFRONT_STRIPE_API_KEY is valid ({escape(exc.reason)}); "
                      f"starting anyway", soft_wrap=True)


def _check_database(settings: Settings) -> None:
    """Open the database and migrate it, as start-up will (``storefront serve`` applies
    the migrations); a database newer than this version, unreachable, missing or without
    its driver raises for :func:`storefront.cli_errors.explain`."""
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade

    url = settings.resolved_database_url()
    with reported_errors(settings):
        try:
            engine = make_engine(url)
        except OSError as exc:  # the SQLite file's folder or the file itself
            raise ConfigError(f"{database_setting(settings)}: the database "
                              f"{shown_url(url)} cannot be used: {os_reason(exc)}") from exc
        try:
            upgrade(engine)
        finally:
            engine.dispose()


def _check_keys(settings: Settings, *, present_only: bool = False) -> None:
    """Open the key-encryption key and the revocable-transform key as start-up will, so
    that a missing, placeholder, badly permissioned or malformed (empty, truncated, not
    32 bytes, not a regular file, unreadable) key file ends ``serve`` with its reason and
    exit 2 before the server starts (rather than a server traceback); in development
    mode a missing key file is created, as start-up does. Then a readable key-encryption
    key that does not open the store's existing data keys (a key file replaced after the
    store was made) is refused the same way
    (:func:`storefront.cli_errors.require_kek_opens_store`, read only).

    ``present_only``: only the checks that create nothing
    (:func:`storefront.bootstrap.check_present_key_files`: in development the key files
    that are there), and not the database: run before the database is opened, so that a
    bad key file leaves the state folder as it was."""
    from identity.errors import KeyFileError
    from storefront.bootstrap import key_file_checks

    development = settings.environment == "development"
    for setting, path, check in key_file_checks(settings):
        if present_only and development and not os.path.lexists(path):
            continue  # made by the full check, once the database has been checked
        try:
            check()
        except KeyFileError as exc:
            raise ConfigError(f"{exc.reason} ({setting} or STOREFRONT_STATE_DIR)") from exc
        except OSError as exc:
            raise ConfigError(f"{setting} cannot be used: {os_reason(exc)}") from exc
    if present_only:
        return
    with reported_errors(settings):
        require_kek_opens_store(settings)


@db_app.command("upgrade")
@cli_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
               ) -> None:
    """Apply the Alembic migrations to the configured database (created when it is a new
    SQLite file). An unreachable database, a missing driver or an unknown revision ends
    the command with one line and exit code 2."""
    from storefront.db.engine import make_engine
    from storefront.db.migrate import current_revision, upgrade
    from storefront.settings import Settings

    settings = Settings()
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine, revision)
        console.print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


def main() -> None:
    """Console-script entry point.

    A setting that does not validate (a ``STOREFRONT_*`` variable or ``.env`` value of the
    wrong type or out of range) ends the command with its reasons and exit code 2, rather
    than a traceback; so does a configuration problem a command lets through
    (:func:`storefront.cli_errors.explain`: the database, its driver or migrations, a
    state path, a key file).
    """
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        if exc.title not in _ENV_PREFIXES:
            raise  # not a settings class: a defect to see in full
        console.print(f"[red]error:[/red] configuration is not valid ({exc.title}):")
        prefix = _ENV_PREFIXES[exc.title]
        for problem in exc.errors(include_url=False, include_input=False):
            where = "_".join(str(p) for p in problem["loc"]).upper()
            name = f"{prefix}{where}" if prefix and where else where or exc.title
            console.print(f"  {name}: {problem['msg']}", markup=False, highlight=False,
                          soft_wrap=True)
        raise SystemExit(2) from None
    except Exception as exc:
        reason = explain(exc)
        if reason is None:
            raise  # not a configuration problem: a defect to see in full
        fail(reason)
        raise SystemExit(2) from None


_ENV_PREFIXES = {"Settings": "STOREFRONT_", "IdentitySettings": "STOREFRONT_IDENTITY_",
                 "SecuritySettings": "STOREFRONT_SECURITY_", "MqttSettings": "STOREFRONT_MQTT_"}
"""The environment-variable prefix of each settings class, to name a bad variable."""
