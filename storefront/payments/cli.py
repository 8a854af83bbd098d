"""``storefront payments``: reconcile processor calls left in flight."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated

import typer

from storefront.cli_errors import ConfigError, cli_errors, require_store

payments_app = typer.Typer(help="Payments: reconcile with the processor.", no_args_is_help=True)


@payments_app.command("reconcile")
@cli_errors
def reconcile_command(
    older_than: Annotated[float | None, typer.Option(
        min=0.0, help="Look up calls in flight for longer than this many seconds "
                      "(default: STOREFRONT_PAYMENT_RECONCILE_AFTER_S).")] = None,
) -> None:
    """Ask the processor about calls a crash left in flight; release stray holds; settle
    the staffed checkout's card tenders left pending (paid when the processor has the
    money, failed when it has no record) and those left voiding (voided when the processor
    has the refund, paid again when it has no record); then finish the exits left
    ``exited`` with no live lease (``stuck_exits``: settled or sent to the staffed
    checkout); close the orphaned ``new`` payments no processor call was ever made for
    (``abandoned``, audited; ``stuck_exits.orphans_*``). Prints the counts, the tenders, the
    voids and the stuck exits as JSON.

    With the simulated processor, STOREFRONT_PAYMENT_SIM_STATE must name the server's
    existing state file: exit 2, nothing created, when it is unset or does not exist."""
    from storefront.bootstrap import bootstrap
    from storefront.payments.reconcile import reconcile
    from storefront.payments.stuck_exits import finish_stuck_exits
    from storefront.settings import Settings

    settings = Settings()
    require_store(settings, keys=True)  # a mistyped folder: refused, nothing created
    if settings.payment_processor == "simulated" and settings.payment_sim_state is None:
        raise ConfigError(
            "the simulated processor keeps its state in memory unless "
            "STOREFRONT_PAYMENT_SIM_STATE names its file: a reconcile run in its own "
            "process would ask an empty processor and record the server's calls as never "
            "made; set STOREFRONT_PAYMENT_SIM_STATE to the server's state file")
    state = settings.payment_sim_state
    if settings.payment_processor == "simulated" and state is not None \
            and not state.is_file():
        raise ConfigError(
            f"STOREFRONT_PAYMENT_SIM_STATE={state} "
            + ("is not a file" if state.exists() else "does not exist")
            + ": a reconcile run would ask an empty processor and record the server's "
              "calls as never made; set it to the server's state file (nothing was "
              "created)")
    container = bootstrap(settings, reconcile_payments=False)
    try:
        after = settings.payment_reconcile_after_s if older_than is None else older_than
        report = reconcile(payment=container.checkout.payment, read_model=container.read_model,
                           clock=container.checkout.clock,
                           older_than=timedelta(seconds=after),
                           lease=timedelta(seconds=settings.exit_lease_s),
                           till=container.till)
        stuck_after = settings.stuck_exit_after_s if older_than is None else older_than
        stuck = finish_stuck_exits(checkout=container.checkout, db=container.db,
                                   store_id=settings.store_id, clock=container.checkout.clock,
                                   older_than=timedelta(seconds=stuck_after),
                                   lease=timedelta(seconds=settings.exit_lease_s),
                                   audit=container.audit)
        typer.echo(json.dumps({**asdict(report), "stuck_exits": asdict(stuck)}))
    finally:
        container.close()
