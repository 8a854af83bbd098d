"""``storefront staff ...``: create a staff account (the TOTP secret is printed once),
list them, disable or enable one, reset its password or TOTP secret, change its role.

Every change is audited with actor ``cli`` (``storefront.security.staff_admin``); all but
``enable`` revoke the member's tokens at once. Errors print the reason and exit 2.
``add`` creates the store when there is none yet (the first admin of a new store); the
other commands refuse (exit 2, nothing created) when there is no store at the configured
place (``storefront.cli_errors.require_store``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from storefront.cli_errors import cli_errors, require_kek_opens_store, require_store

if TYPE_CHECKING:
    from storefront.security.staff_admin import StaffAdmin, StaffChange

staff_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
console = Console()
StaffIdArg = Annotated[str, typer.Argument(help="Staff id.")]


@staff_app.command("add")
@cli_errors
def add(staff_id: Annotated[str, typer.Argument(help="Staff id.")],
        role: Annotated[str, typer.Option(help="cashier, manager, auditor or admin.")]) -> None:
    """Create an account; the password is asked for (never echoed or logged) once the id
    and role are known to be acceptable."""
    from storefront.bootstrap import bootstrap
    from storefront.errors import StorefrontError
    from storefront.settings import Settings

    # an existing store's key file must open its secrets before one more is sealed under it
    # (a new store has nothing sealed yet: the check passes and bootstrap makes the store)
    require_kek_opens_store(Settings())
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


@contextmanager
def _staff_admin() -> Iterator[StaffAdmin]:
    """The service's staff account changes; a StorefrontError prints its reason, exit 2.
    Refuses a store that does not exist (nothing is created)."""
    from storefront.bootstrap import bootstrap
    from storefront.errors import StorefrontError
    from storefront.settings import Settings

    settings = Settings()
    require_store(settings, keys=True)
    container = bootstrap(settings, reconcile_payments=False)
    try:
        yield container.security.staff_admin
    except StorefrontError as exc:
        console.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(2) from exc
    finally:
        container.close()


def _report(done: StaffChange, what: str) -> None:
    state = "disabled" if done.disabled else "enabled"
    if not done.changed:
        console.print(f"staff {done.staff_id} unchanged ({done.role}, {state})")
        return
    console.print(f"staff {done.staff_id}: {what} ({done.role}, {state}; "
                  f"{done.tokens_revoked} token(s) revoked)")
    if done.totp_uri:
        console.print("TOTP secret (shown once; add it to an authenticator app):")
        console.print(done.totp_secret or "", soft_wrap=True)
        console.print(done.totp_uri, soft_wrap=True)


def _change(staff_id: str, what: str,
            run: Callable[[StaffAdmin], StaffChange]) -> None:
    with _staff_admin() as admin:
        done = run(admin)
    _report(done, what)


@staff_app.command("list")
@cli_errors
def list_staff() -> None:
    """List the staff accounts, one a line, tab-separated: id, role, ``enabled`` or
    ``disabled``, ``totp`` or ``no-totp``."""
    with _staff_admin() as admin:
        views = admin.accounts()
    for v in views:
        typer.echo(f"{v.staff_id}\t{v.role}\t{'disabled' if v.disabled else 'enabled'}"
                   f"\t{'totp' if v.has_totp else 'no-totp'}")


@staff_app.command("disable")
@cli_errors
def disable(staff_id: StaffIdArg) -> None:
    """Disable an account and revoke its tokens (the last enabled admin cannot be)."""
    _change(staff_id, "disabled", lambda a: a.disable(actor="cli", staff_id=staff_id))


@staff_app.command("enable")
@cli_errors
def enable(staff_id: StaffIdArg) -> None:
    """Enable a disabled account."""
    _change(staff_id, "enabled", lambda a: a.enable(actor="cli", staff_id=staff_id))


@staff_app.command("reset-password")
@cli_errors
def reset_password(staff_id: StaffIdArg) -> None:
    """Set a new password (asked for twice once the account is known to exist; never
    echoed or logged) and revoke the member's tokens."""
    with _staff_admin() as admin:
        admin.get(staff_id)
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
        done = admin.reset_password(actor="cli", staff_id=staff_id, password=password)
    _report(done, "password reset")


@staff_app.command("reset-totp")
@cli_errors
def reset_totp(staff_id: StaffIdArg) -> None:
    """Issue a new TOTP secret to a manager or admin (printed once) and revoke the
    member's tokens; the old secret stops working."""
    _change(staff_id, "TOTP secret reset",
            lambda a: a.reset_totp(actor="cli", staff_id=staff_id))


@staff_app.command("set-role")
@cli_errors
def set_role(staff_id: StaffIdArg,
             role: Annotated[str, typer.Option(help="cashier, manager, auditor or admin.")]
             ) -> None:
    """Change an account's role and revoke its tokens; a TOTP secret is printed once when
    the account becomes a manager or admin without one."""
    _change(staff_id, f"role set to {role}",
            lambda a: a.change_role(actor="cli", staff_id=staff_id, role=role))
