"""The ``storefront`` command line (Typer): demo, serve, db."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from storefront.cli_audit import audit_app
from storefront.cli_catalog import catalog_app
from storefront.cli_devices import devices_app
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
        console.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default from settings).")]
    = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from settings).")] = None,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs); migrations are applied on start."""
    import uvicorn

    from storefront.api.app import create_app
    from storefront.settings import Settings

    settings = Settings()
    _check_keys(settings)
    uvicorn.run(create_app(settings=settings), host=host or settings.host,
                port=port or settings.port)


def _check_keys(settings: Settings) -> None:
    """Open the key-encryption key as start-up will, so that a missing, placeholder or
    badly permissioned key file ends ``serve`` with its reason and exit 2 before the
    server starts (rather than a server traceback); in development mode a missing key
    file is created, as start-up does."""
    from identity.errors import KeyFileError
    from storefront.subject_keys import KekFiles, ReloadingKeyProvider

    try:
        ReloadingKeyProvider(KekFiles(settings.resolved_key_file()),
                             development=settings.environment == "development").current()
    except KeyFileError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
               ) -> None:
    """Apply the Alembic migrations to the configured database."""
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
    than a traceback.
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


_ENV_PREFIXES = {"Settings": "STOREFRONT_", "IdentitySettings": "STOREFRONT_IDENTITY_",
                 "SecuritySettings": "STOREFRONT_SECURITY_", "MqttSettings": "STOREFRONT_MQTT_"}
"""The environment-variable prefix of each settings class, to name a bad variable."""
