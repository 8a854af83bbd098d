"""``storefront catalog ...``: import the Israeli price-transparency files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from storefront.cli_errors import cli_errors, fail
from storefront.errors import StorefrontError

catalog_app = typer.Typer(help="Product catalogue and promotions.", no_args_is_help=True)
console = Console()


@catalog_app.command("import")
@cli_errors
def import_files(
    prices: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                         help="Price file (CSV, gzip allowed, Hebrew headers).")],
    promos: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                help="Promotion file of the same chains.")]
    = None,
    chain: Annotated[str | None, typer.Option(help="Chain id (מזהה רשת) to import.")] = None,
    store: Annotated[str | None, typer.Option(help="Store id (מזהה חנות) to import.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Skip promotions ended before this "
                                                   "YYYY-MM-DD (default: date in the file name).")]
    = None,
    report: Annotated[Path | None, typer.Option(help="Write the summary as JSON here.")] = None,
    replace_store: Annotated[bool, typer.Option(
        "--replace-store", help="Import another chain or store than the one imported "
                                "before: its promotions are deleted; its products stay, "
                                "and those the new file does not list are withdrawn from "
                                "sale until PUT /products sets their price.")]
    = False,
) -> None:
    """Load one store's prices and promotions as the catalogue (safe to repeat).

    Exit 2, nothing written, when a file cannot be read or another store was imported
    before (without ``--replace-store``); malformed rows are counted and skipped.
    """
    from storefront.bootstrap import bootstrap
    from storefront.catalog_import import import_israeli_catalogue

    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        raise fail(f"bad --as-of date: {exc}") from exc
    container = None
    try:
        try:
            container = bootstrap(reconcile_payments=False)  # payments are the server's
        except ValueError as exc:  # a setting start-up refuses (Stripe without its key)
            raise fail(str(exc)) from exc
        if container.settings.currency != "ILS":
            console.print(f"[yellow]note:[/yellow] the store currency is "
                          f"{escape(container.settings.currency)}; these prices are ILS "
                          "(set STOREFRONT_CURRENCY=ILS to sell them).", soft_wrap=True)
        with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("rows", total=None)
            result = import_israeli_catalogue(
                container.catalogue, prices=prices, promos=promos, chain=chain, store=store,
                as_of=day, progress=lambda n: bar.advance(task, n),
                replace_store=replace_store)
    except StorefrontError as exc:
        raise fail(exc.reason) from exc
    finally:
        if container is not None:
            container.close()
    summary = result.as_dict()
    _print_summary(summary)
    if report is not None:
        report.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n",
                          encoding="utf-8")


def _print_summary(summary: dict[str, object]) -> None:
    table = Table(title=f"chain {summary['chain_id']} store {summary['store_id']} "
                        f"({summary['seconds']} s)")
    table.add_column("file")
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_column("lines (first)")
    table.add_row("prices", "read", str(summary["prices_read"]))
    table.add_row("prices", "imported", str(summary["products_imported"]))
    _rejected_rows(table, "prices", summary["prices_rejected"], summary["prices_rejected_lines"])
    table.add_row("promotions", "read", str(summary["promo_rows_read"]))
    table.add_row("promotions", "imported rows", str(summary["promo_rows_imported"]))
    table.add_row("promotions", "promotions", str(summary["promotions_imported"]))
    _rejected_rows(table, "promotions", summary["promos_rejected"],
                   summary["promos_rejected_lines"])
    for source in list(summary["replaced_stores"]):  # type: ignore[call-overload]
        table.add_row("promotions", f"retired: store {source}", "")
    if summary["replaced_stores"]:
        table.add_row("prices", "withdrawn: not in the file", str(summary["products_withdrawn"]))
    console.print(table)


def _rejected_rows(table: Table, file: str, counts: object, lines: object) -> None:
    """One row per rejection reason: count and its first three line numbers (the JSON
    report keeps more; none for rows of other stores)."""
    first = dict(lines)  # type: ignore[call-overload]
    for reason, count in dict(counts).items():  # type: ignore[call-overload]
        numbers = first.get(reason, [])
        shown = ", ".join(str(n) for n in numbers[:3]) + (", ..." if count > 3 else "")
        table.add_row(file, f"rejected: {reason}", str(count), shown if numbers else "")
