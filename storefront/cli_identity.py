"""``storefront identity ...``: measure palm recognition on a manifest folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from identity.errors import IdentityError

identity_app = typer.Typer(help="Palm recognition: evaluation.", no_args_is_help=True)
console = Console()


@identity_app.command()
def evaluate(
    folder: Annotated[Path, typer.Argument(help="Folder with manifest.csv "
                                                 "(path,identity,session,capture,source).")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
    = None,
    det: Annotated[Path | None, typer.Option(help="Write the DET curve PNG here.")] = None,
    limit_identities: Annotated[int | None, typer.Option(
        min=1, help="Use only the first N identities (sorted).")] = None,
) -> None:
    """Run decode -> ROI -> template over every image and report EER, FNMR@FMR, rank-1."""
    from identity.evaluate_run import evaluate_folder, write_det_plot

    try:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def step(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            result = evaluate_folder(folder, limit_identities=limit_identities, progress=step)
        if json_path is not None:
            json_path.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
        if det is not None and result.genuine.size and result.impostor.size:
            write_det_plot(result.genuine, result.impostor, det, title=folder.name)
    except IdentityError as exc:
        console.print(f"[red]error:[/red] {exc.reason}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot write output: {exc}")
        raise typer.Exit(2) from exc
    _summary(result.report)
    if det is not None and not (result.genuine.size and result.impostor.size):
        console.print("[yellow]no DET curve: genuine or impostor comparisons are missing[/yellow]")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.4f} %"


def _summary(report: dict[str, Any]) -> None:
    table = Table(title=f"palm evaluation ({report['protocol']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("EER", _pct(report["eer"]))
    for key, value in report["fnmr_at_fmr"].items():
        table.add_row(f"FNMR at FMR {key}", _pct(value))
    table.add_row("rank-1", _pct(report["rank1"]))
    table.add_row("FTA / FTE", f"{_pct(report['fta'])} / {_pct(report['fte'])}")
    table.add_row("genuine / impostor comparisons",
                  f"{report['genuine_comparisons']} / {report['impostor_comparisons']}")
    table.add_row("identities / images", f"{report['identities']} / {report['images']}")
    ms, us = report["extract_ms_p50"], report["compare_us_p50"]
    table.add_row("extract p50 / compare p50",
                  f"{'n/a' if ms is None else f'{ms:.2f} ms'} / "
                  f"{'n/a' if us is None else f'{us:.1f} us'}")
    console.print(table)
    for failure in report["failures"][:10]:
        console.print(f"FTA {failure['path']}: {failure['reason']}")


@identity_app.command()
def bench(
    gallery: Annotated[int, typer.Option(min=1000, max=10_000_000,
                                         help="Gallery size in templates.")],
    palms: Annotated[Path, typer.Option(help="Tongji-style folder with manifest.csv.")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
    = None,
    real_palms: Annotated[int, typer.Option(min=2, help="Probed real palms.")] = 150,
    seed: Annotated[int, typer.Option(help="Seed of the filler templates.")] = 2026,
) -> None:
    """1:N search at scale: real palms + filler templates; identify time, recall, bytes."""
    from identity.scale_bench import load_data, run

    try:
        data = load_data(palms, real_palms=real_palms)
        report = run(data, gallery, seed=seed)
    except (IdentityError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    text = json.dumps(report, indent=2)
    console.print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n", encoding="utf-8")
