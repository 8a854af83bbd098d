"""``storefront staff add``: create a staff account (the TOTP secret is printed once)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

staff_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
console = Console()


@staff_app.command("add")
def add(staff_id: Annotated[str, typer.Argument(help="Staff id.")],
        role: Annotated[str, typer.Option(help="cashier, manager, auditor or admin.")]) -> None:
    """Create an account; the password is asked for (never echoed or logged) once the id
    and role are known to be acceptable."""
    from storefront.bootstrap import bootstrap
    from storefront.errors import StorefrontError

    container = bootstrap(reconcile_payments=False)
    try:
        container.security.staff.check_new(staff_id=staff_id, role=role)
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        made = container.security.staff.add(staff_id=staff_id, role=role, password=password)
        container.audit.record(actor="cli", action="staff_added", subject=f"staff:{made.id}",
                               details={"role": made.role})
    except StorefrontError as exc:
        console.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(2) from exc
    finally:
        container.close()
    console.print(f"staff {made.id} added as {made.role}")
    if made.totp_uri:
        console.print("TOTP secret (shown once; add it to an authenticator app):")
        console.print(made.totp_secret or "", soft_wrap=True)
        console.print(made.totp_uri, soft_wrap=True)  # one line, so it can be pasted
