"""``storefront privacy ...``: apply the shoppers' retention periods."""

from __future__ import annotations

import json

import typer
from rich.console import Console

privacy_app = typer.Typer(help="Shopper privacy: retention.", no_args_is_help=True)
console = Console()


@privacy_app.command()
def sweep() -> None:
    """Delete palm data unused for longer than each shopper's period (default 730 days) and
    detach trips older than the chosen trip period; safe to run again (idempotent).

    Prints a JSON summary: shoppers whose palms were deleted, templates deleted,
    trips detached.
    """
    from storefront.bootstrap import bootstrap
    from storefront.privacy.wiring import build_privacy

    container = bootstrap(reconcile_payments=False)
    try:
        report = build_privacy(container).retention.sweep()
    finally:
        container.close()
    console.print_json(json.dumps(report.as_dict()))
