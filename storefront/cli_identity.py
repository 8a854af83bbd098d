"""``storefront identity ...``: measure palm recognition on a manifest folder, benchmark
1:N search at scale, and replace the revocable-transform key of the palm index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from identity.errors import IdentityError

identity_app = typer.Typer(help="Palm recognition: evaluation, benchmark, revocable key.",
                           no_args_is_help=True)
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


@identity_app.command("rotate-transform")
def rotate_transform() -> None:
    """New revocable-transform key: every palm-index code is re-derived from the database.

    Writes a new random key to <key file>.next (mode 0600), decrypts every stored
    template (they are kept clear-domain, envelope-encrypted) and transforms it under
    the new key, writes the encrypted index snapshot under the new key (the old
    snapshot is replaced: it can never be loaded again), then makes the new key the
    key file (STOREFRONT_REVOCABLE_KEY_FILE, default <data dir>/keys/revocable.key).
    The old key is destroyed: codes made under it match no probe any more.

    Running API workers need no restart: each watches the key file and re-derives its
    index under the new key (from the new snapshot) at its next identification or
    enrolment, which waits for that rebuild. Interrupted runs are safe to repeat.
    """
    try:
        report = _rotate_transform()
    except (IdentityError, OSError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'reason', exc)}")
        raise typer.Exit(2) from exc
    console.print(f"revocable key {report['old']} revoked; current key {report['new']}; "
                  f"{report['templates']} index code(s) re-derived; snapshot "
                  f"{report['snapshot_bytes']} bytes")


def _rotate_transform() -> dict[str, Any]:
    """The steps of :func:`rotate_transform`; returns what was done. Raises IdentityError
    (key files, undecryptable template) or OSError (writing the key or snapshot)."""
    from sqlalchemy.orm import sessionmaker

    from identity.revocable import KeyFileTransform, prepare_next_key, promote_next_key
    from identity.service import IdentityService
    from identity.settings import IdentitySettings
    from storefront.bootstrap import palm_index_snapshot_path, revocable_key_path
    from storefront.db.engine import make_engine
    from storefront.db.migrate import upgrade
    from storefront.settings import Settings
    from storefront.subject_keys import (
        KekFiles,
        ReloadingKeyProvider,
        SqlSubjectKeyStore,
        StoreKeyring,
    )
    from storefront.templates_repo import SqlTemplateRepository

    settings = Settings()
    development = settings.environment == "development"
    path = revocable_key_path(settings)
    engine = make_engine(settings.resolved_database_url())
    try:
        upgrade(engine)
        db = sessionmaker(engine, expire_on_commit=False)
        old = KeyFileTransform(path, development=development).current()
        provider = ReloadingKeyProvider(KekFiles(settings.resolved_key_file()),
                                        development=development)
        new = prepare_next_key(path)
        service = IdentityService(repository=SqlTemplateRepository(db),
                                  cipher=StoreKeyring(provider, SqlSubjectKeyStore(db)),
                                  settings=IdentitySettings(),
                                  snapshot_path=palm_index_snapshot_path(settings),
                                  transform=new)
        with _progress() as bar:
            task = bar.add_task("re-deriving palm-index codes", total=_template_count(db))
            count = service.rebuild(progress=lambda done: bar.update(task, completed=done))
        size = palm_index_snapshot_path(settings).stat().st_size
        promote_next_key(path)
    finally:
        engine.dispose()
    return {"old": old.key_id, "new": new.key_id, "templates": count, "snapshot_bytes": size}


def _template_count(db: Any) -> int:
    """Stored palm templates (the progress bar's total)."""
    import sqlalchemy as sa

    from storefront.db.models import PalmTemplate

    with db() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(PalmTemplate)) or 0)
