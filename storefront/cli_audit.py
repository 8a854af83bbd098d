"""``storefront audit verify``: check the audit hash chain (exit 1 at the first bad entry;
exit 2, nothing created, when there is no store at the configured place)."""

from __future__ import annotations

import typer
from rich.console import Console

from storefront.cli_errors import cli_errors, require_store

audit_app = typer.Typer(help="Tamper-evident audit log.", no_args_is_help=True)
console = Console()


@audit_app.command("verify")
@cli_errors
def verify() -> None:
    """Walk the chain; print the head to anchor elsewhere, or the first bad seq."""
    from sqlalchemy.orm import sessionmaker

    from storefront.clock import utc_now
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade
    from storefront.security.audit import Audit
    from storefront.settings import Settings

    settings = Settings()
    require_store(settings)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine)
        report = Audit(sessionmaker(engine), utc_now).verify()
    finally:
        engine.dispose()
    if report.ok:
        console.print(f"audit chain intact: {report.checked} entries, head "
                      f"{report.head_seq} {report.head_hash}")
        return
    console.print(f"[red]audit chain broken at seq {report.first_bad_seq}:[/red] {report.reason}")
    raise typer.Exit(1)
