"""``storefront privacy ...``: apply the shoppers' retention periods; export or erase one
shopper's data on their request (shoppers without a login, registered by staff).

``export`` and ``delete`` use the portal's services (the same archive; the same erasure,
refused while a trip is not settled) and are audited with actor ``cli``. A shopper with
a login uses the portal: refused (exit 2) unless ``--has-login-ok`` (an operator acting on
a verified request), which the audit entry records. Errors print the reason and exit 2; a
declined confirmation exits 1. Every command refuses (exit 2, nothing created) when there
is no store at the configured place (``storefront.cli_errors.require_store``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from storefront.cli_errors import cli_errors, require_store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from storefront.privacy.wiring import Privacy

privacy_app = typer.Typer(help="Shopper privacy: retention, data-subject requests.",
                          no_args_is_help=True)
console = Console()
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _shopper_id(value: str) -> str:
    if not _ID.match(value):
        raise typer.BadParameter("a shopper id: 1-64 letters, digits, '.', '_' or '-'")
    return value


ShopperOpt = Annotated[str, typer.Option("--shopper", help="The shopper's id (shp_...).",
                                         callback=_shopper_id)]
LoginOkOpt = Annotated[bool, typer.Option(
    "--has-login-ok", help="Act for a shopper who has a login (normally refused: they use "
    "the portal); recorded in the audit entry.")]


def _login_note(sessions: sessionmaker[Session], shopper: str,
                login_ok: bool) -> dict[str, object] | None:
    """None for a shopper without a login; the audit note when ``login_ok``; else raises
    ShopperHasLogin (exit 2 with the reason)."""
    from storefront.privacy.staff_requests import (
        OVERRIDE_NOTE,
        has_login,
        refuse_login_holder,
    )

    if not has_login(sessions, shopper):
        return None
    if not login_ok:
        refuse_login_holder(sessions, shopper)
    return dict(OVERRIDE_NOTE)


@contextmanager
def _privacy() -> Iterator[tuple[Privacy, sessionmaker[Session]]]:
    """The privacy services over the configured store and its database sessions;
    StorefrontError and OSError end the command with the reason and exit code 2."""
    from storefront.bootstrap import bootstrap
    from storefront.errors import StorefrontError
    from storefront.privacy.wiring import build_privacy
    from storefront.settings import Settings

    settings = Settings()
    require_store(settings, keys=True)
    container = bootstrap(settings, reconcile_payments=False)
    try:
        yield build_privacy(container), container.db
    except (StorefrontError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(getattr(exc, 'reason', exc)))}",
                      soft_wrap=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()


@privacy_app.command("export")
@cli_errors
def export(shopper: ShopperOpt,
           out: Annotated[Path, typer.Option("--out", help="The zip file to write (must not "
                                             "exist; written with mode 0600).",
                                             dir_okay=False)],
           has_login_ok: LoginOkOpt = False) -> None:
    """Write the archive of everything held about a shopper (the portal's export: data.json
    and one CSV per table) to --out, for a shopper who cannot sign in (one with a login
    only with --has-login-ok). Audited (actor ``cli``). Prints a JSON summary: shopper,
    file, bytes."""
    if out.exists():
        raise typer.BadParameter(f"{out} exists; choose a new file", param_hint="'--out'")
    if not out.parent.is_dir():
        raise typer.BadParameter(f"folder {out.parent} does not exist", param_hint="'--out'")
    with _privacy() as (p, sessions):
        note = _login_note(sessions, shopper, has_login_ok)
        data = p.exports.export_now(shopper, actor="cli", note=note)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    typer.echo(json.dumps({"shopper_id": shopper, "out": str(out), "bytes": len(data)}))


@privacy_app.command("delete")
@cli_errors
def delete(shopper: ShopperOpt,
           yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
           = False, has_login_ok: LoginOkOpt = False) -> None:
    """Erase a shopper as their own account deletion does: personal data, palms (their data
    key destroyed), credentials, exports, entry codes and cart event logs; receipts,
    payments and tenders kept under a fresh pseudonym per trip. Refused while a trip is not
    settled, and for a shopper with a login unless --has-login-ok. Asks for confirmation
    unless --yes. Audited (actor ``cli``). Prints what was erased and kept as JSON."""
    if not yes:
        typer.confirm(f"Erase shopper {shopper} and all their personal data? This cannot be "
                      "undone", abort=True)
    with _privacy() as (p, sessions):
        note = _login_note(sessions, shopper, has_login_ok)
        done = p.deletion.delete_account(shopper_id=shopper, actor="cli", note=note)
    typer.echo(json.dumps(asdict(done), default=str))


@privacy_app.command()
@cli_errors
def sweep() -> None:
    """Delete palm data unused for longer than each shopper's period (default 730 days) and
    detach trips older than the chosen trip period; safe to run again (idempotent).

    Prints a JSON summary: shoppers whose palms were deleted, templates deleted,
    trips detached.
    """
    from storefront.bootstrap import bootstrap
    from storefront.privacy.wiring import build_privacy
    from storefront.settings import Settings

    settings = Settings()
    require_store(settings, keys=True)
    container = bootstrap(settings, reconcile_payments=False)
    try:
        report = build_privacy(container).retention.sweep()
    finally:
        container.close()
    console.print_json(json.dumps(report.as_dict()))
