"""``storefront identity ...``: measure palm recognition on a manifest folder, benchmark
1:N search at scale, replace the revocable-transform key of the palm index, and list or
purge stored templates of a retired format version."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from identity.errors import IdentityError
from storefront.cli_errors import fail, reason_of

if TYPE_CHECKING:
    from identity.protection import TemplateProtector
    from identity.repository import TemplateRepository
    from identity.retired import PurgedSubject, PurgeResult, RetiredReport
    from storefront.security.audit import Audit

identity_app = typer.Typer(help="Palm recognition: evaluation, benchmark, revocable key.",
                           no_args_is_help=True)
console = Console()


@identity_app.command()
def evaluate(
    folder: Annotated[Path, typer.Argument(help="Folder with manifest.csv "
                                                 "(path,identity,session,capture,source).")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
    = None,
    det: Annotated[Path | None, typer.Option(
        help="Write the DET curve here (format from the extension: png, pdf, svg, eps, "
             "ps, jpg, tif, webp, raw, rgba).")]
    = None,
    limit_identities: Annotated[int | None, typer.Option(
        min=1, help="Use only the first N identities in natural order (p2 before p10, "
                    "as session labels).")] = None,
) -> None:
    """Run decode -> ROI -> template over every image and report EER, FNMR@FMR, rank-1.

    A file listed twice, or a byte-identical copy (same SHA-256) of an earlier capture of
    the same identity, is used once (duplicate rows); one file, or byte-identical files,
    under two identities is refused. Only regular files are read (a FIFO or device is
    unreadable).

    Exit code 2 on a bad folder, manifest or output path (checked before the run: a --det
    extension that needs an external program or is no plot format, --json / --det naming
    the input manifest, an image the manifest lists or the same file, an output path
    that is a folder), when no
    listed image can be read, or when writing an output fails (the summary is printed
    first). Missing parent folders of --json / --det are created when the output is
    written.
    """
    from identity.evaluate_run import evaluate_folder, write_det_plot

    _prepare_outputs(folder, json_path, det)
    try:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def step(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            result = evaluate_folder(folder, limit_identities=limit_identities, progress=step)
    except IdentityError as exc:
        raise fail(exc.reason) from exc
    _summary(result.report)
    failed = False
    if json_path is not None:
        failed |= not _write_output(
            json_path, "report",
            lambda: json_path.write_text(json.dumps(result.report, indent=2) + "\n",
                                         encoding="utf-8"))
    if det is not None and result.genuine.size and result.impostor.size:
        failed |= not _write_output(
            det, "DET curve",
            lambda: write_det_plot(result.genuine, result.impostor, det, title=folder.name))
    elif det is not None:
        console.print("[yellow]no DET curve: genuine or impostor comparisons are missing"
                      "[/yellow]")
    if failed:
        raise typer.Exit(2)


def _prepare_outputs(folder: Path, json_path: Path | None, det: Path | None) -> None:
    """Before the run, nothing created: refuse a --det extension that is not a plot
    format written without external programs, an output path that is a folder or under
    a file, and outputs that are the input manifest, an image it lists or the same file.
    Prints the reason and raises typer.Exit(2)."""
    from identity.evaluate_run import det_format_problem

    problem = det_format_problem(det) if det is not None else None
    if det is not None and problem is not None:
        _refuse(f"--det {det}: {problem}")
    outputs = [(o, p) for o, p in (("--json", json_path), ("--det", det)) if p is not None]
    for option, path in outputs:
        if path.is_dir():
            _refuse(f"{option} {path} is a folder, not a file")
        parent = _nearest_existing(path.parent)
        if not parent.is_dir():
            _refuse(f"{option} {path}: {parent} is not a folder")
        if _same_file(path, folder / "manifest.csv"):
            _refuse(f"{option} {path} is the input manifest {folder / 'manifest.csv'}")
    if len(outputs) == 2 and _same_file(outputs[0][1], outputs[1][1]):
        _refuse(f"--json {json_path} and --det {det} name the same file")
    for option, path, image in _outputs_over_inputs(folder, outputs):
        _refuse(f"{option} {path} is the input image {image} listed in "
                f"{folder / 'manifest.csv'}")


def _outputs_over_inputs(folder: Path, outputs: list[tuple[str, Path]]
                         ) -> Iterator[tuple[str, Path, Path]]:
    """(option, output, image) for each output that names a file the manifest lists (the
    same resolved path, or for an existing output the same inode: a hard link). A
    manifest that cannot be read yields nothing: the run refuses it before any output
    is written."""
    from identity.evaluate_run import read_manifest

    if not outputs:
        return
    try:
        images = [c.path for c in read_manifest(folder)]
    except IdentityError:
        return
    by_path = {_resolved(i): i for i in images}
    by_inode: dict[tuple[int, int], Path] | None = None
    for option, path in outputs:
        image = by_path.get(_resolved(path))
        if image is None and path.exists():
            if by_inode is None:
                by_inode = {}
                for i in images:
                    with contextlib.suppress(OSError):
                        st = i.stat()
                        by_inode.setdefault((st.st_dev, st.st_ino), i)
            with contextlib.suppress(OSError):
                st = path.stat()
                image = by_inode.get((st.st_dev, st.st_ino))
        if image is not None:
            yield option, path, image


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop: compare as written
        return path.absolute()


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder a write would start in)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same resolved path, or (both existing)
    the same inode (a hard link)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and a.samefile(b)
    except (OSError, RuntimeError):  # a symbolic link loop: compare as written
        return a.absolute() == b.absolute()


def _refuse(reason: str) -> NoReturn:
    """Print ``reason`` (escaped, one line) as an error and exit with code 2."""
    raise fail(reason)


def _write_output(path: Path, what: str, write: Callable[[], object]) -> bool:
    """Create ``path``'s missing parent folders and run ``write``; on any error print why
    ``what`` could not be written to ``path`` and return False."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except Exception as exc:  # any failure of an output is reported, never a traceback
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        console.print(f"[red]error:[/red] cannot write the {what} to {escape(str(path))}: "
                      f"{escape(reason or type(exc).__name__)}", soft_wrap=True)
        return False
    return True


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.4f} %"


def _summary(report: dict[str, Any]) -> None:
    """The measures table (rates in percent), then warnings about captures left out
    (later sessions, duplicate rows, unreadable files) and the failures to acquire, each
    list cut at 10 lines with the number left. Data-derived text is printed escaped (a
    path may hold rich markup such as ``[red]``)."""
    table = Table(title=f"palm evaluation ({escape(report['protocol'])})")
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
    if report.get("captures_unused"):
        _warn(f"{report['captures_unused']} capture(s) not used: "
              f"{report['captures_unused_reason']}")
    if report.get("duplicate_rows"):
        _warn(f"{report['duplicate_rows']} duplicate manifest row(s) dropped (the same "
              f"file, or a byte-identical copy, listed again; its first row is kept)")
        _lines([f"line {d['line']} repeats line {d['first_line']}"
                f"{' (identical bytes)' if d.get('same') == 'content' else ''}: {d['path']}"
                for d in report["duplicate_first"]], report["duplicate_rows"])
    if report.get("unreadable"):
        _warn(f"{report['unreadable']} listed file(s) could not be read (data errors, not "
              f"counted in images, FTA or FTE)")
        _lines([f"{u['path']}: {u['reason']}" for u in report["unreadable_first"]],
               report["unreadable"])
    _lines([f"FTA {f['path']}: {f['reason']}" for f in report["failures"][:10]],
           len(report["failures"]))


def _warn(text: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {escape(text)}", soft_wrap=True)


def _lines(lines: list[str], total: int, shown: int = 10) -> None:
    """Print the first ``shown`` of ``lines`` (plain text, escaped) and "... and N more"
    when ``total`` exceeds them."""
    for line in lines[:shown]:
        console.print(escape(line), soft_wrap=True)
    if total > min(len(lines), shown):
        console.print(f"... and {total - min(len(lines), shown)} more", soft_wrap=True)


@identity_app.command()
def bench(
    gallery: Annotated[int, typer.Option(
        min=1000, max=10_000_000,
        help="Gallery size in templates, 1,000 to 10,000,000 (real palms + fillers).")],
    palms: Annotated[Path, typer.Option(help=(
        "Folder of real palm images with manifest.csv "
        "(path,identity,session,capture,source) and two sessions, e.g. "
        "$STOREFRONT_DATA_DIR/palm/tongji-roi. The first --real-palms identities (sorted) "
        "are enrolled from the first session and probed with the second; the next 150 "
        "identities feed the filler templates."))],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
    = None,
    real_palms: Annotated[int, typer.Option(min=2, help="Probed real palms.")] = 150,
    seed: Annotated[int, typer.Option(help="Seed of the filler templates.")] = 2026,
) -> None:
    """1:N search at scale: real palms (from --palms) + filler templates up to --gallery;
    identify time, shortlist recall, bytes per palm, restart times.

    The report is printed to stdout as one JSON document (plain text, never wrapped, so
    it can be piped) and written to --json when given. Exit code 2 with the reason on
    a bad folder or too few usable images (e.g. no real palm with a usable first-session
    image)."""
    from identity.scale_bench import load_data, run

    try:
        data = load_data(palms, real_palms=real_palms)
        report = run(data, gallery, seed=seed)
    except (IdentityError, ValueError) as exc:
        raise fail(str(getattr(exc, "reason", exc))) from exc
    text = json.dumps(report, indent=2)
    typer.echo(text)  # plain stdout: rich would wrap long strings and break the JSON
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

    Every run that decrypts templates writes one "bulk_decrypt" audit entry (actor
    "cli", subject "palm_templates", how many templates and the outcome).

    Running API workers need no restart: each watches the key file and re-derives its
    index under the new key (from the new snapshot) at its next identification or
    enrolment, which waits for that rebuild. Interrupted runs are safe to repeat.

    Nothing is created on a wrong setting: exit code 2, and nothing written, when the
    database (a SQLite file that does not exist, a database without palm templates),
    the KEK file (STOREFRONT_KEY_FILE) or the revocable key file is missing. A failed
    rebuild (e.g. a KEK that decrypts nothing) exits 2 and leaves the key file as it was.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from storefront.errors import StorefrontError

    try:
        report = _rotate_transform()
    except (IdentityError, StorefrontError, SQLAlchemyError, OSError) as exc:
        raise fail(reason_of(exc)) from exc  # one line, setting named, password masked
    console.print(f"revocable key {report['old']} revoked; current key {report['new']}; "
                  f"{report['templates']} index code(s) re-derived; snapshot "
                  f"{report['snapshot_bytes']} bytes")


def _rotate_transform() -> dict[str, Any]:
    """The steps of :func:`rotate_transform`; returns what was done.

    The store is opened as ``identity retired`` opens it (:func:`_retired_store`): the
    database must exist (:mod:`storefront.db.existing`; it is migrated) and the KEK and
    revocable key files are read, never created. The new key's ``<key file>.next`` is
    removed again when the rotation fails before it is promoted.

    Raises NotFound (no database, or no palm-template table), KeyFileError (a key file
    missing or invalid), another IdentityError (undecryptable template), SQLAlchemyError,
    or OSError (writing the key or snapshot).
    """
    from sqlalchemy.orm import sessionmaker

    from identity.errors import KeyFileError
    from identity.revocable import (
        RevocableTransform,
        load_key,
        next_key_file,
        prepare_next_key,
        promote_next_key,
    )
    from identity.service import IdentityService
    from identity.settings import IdentitySettings
    from storefront.bootstrap import palm_index_snapshot_path, revocable_key_path
    from storefront.db.existing import existing_database, require_database_file
    from storefront.db.models import PalmTemplate
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
    url = settings.resolved_database_url()
    require_database_file(url)  # before the key files: the database is the first thing asked
    files = KekFiles(settings.resolved_key_file())
    for key_file, variable in ((files.current, "STOREFRONT_KEY_FILE"),
                               (path, "STOREFRONT_REVOCABLE_KEY_FILE")):
        if not key_file.is_file():
            raise KeyFileError(f"key file {key_file} does not exist (check {variable}); "
                               f"nothing was created")
    from storefront.cli_errors import reported_errors, require_kek_opens_store

    with reported_errors(settings):  # before anything is decrypted or audited
        require_kek_opens_store(settings)
    # read before the database is opened (and migrated): a bad key file changes nothing
    old = RevocableTransform(load_key(path, development=development, create=False))
    with existing_database(url, PalmTemplate.__tablename__, "palm templates") as engine:
        db = sessionmaker(engine, expire_on_commit=False)
        provider = ReloadingKeyProvider(files, development=development)
        new = prepare_next_key(path)
        try:
            service = IdentityService(repository=SqlTemplateRepository(db),
                                      cipher=StoreKeyring(provider, SqlSubjectKeyStore(db)),
                                      settings=IdentitySettings(),
                                      snapshot_path=palm_index_snapshot_path(settings),
                                      transform=new)
            with _progress() as bar:
                task = bar.add_task("re-deriving palm-index codes", total=_template_count(db))
                try:
                    count = service.rebuild(
                        progress=lambda done: bar.update(task, completed=done))
                except BaseException:
                    with contextlib.suppress(Exception):  # the first error is what to show
                        _audit_bulk(db, "identity rotate-transform", outcome="failed",
                                    templates=_template_count(db))
                    raise
            _audit_bulk(db, "identity rotate-transform", outcome="done", templates=count,
                        new_transform=new.key_id)
            size = palm_index_snapshot_path(settings).stat().st_size
            promote_next_key(path)
        except BaseException:
            next_key_file(path).unlink(missing_ok=True)  # never promoted: made no stored code
            raise
    return {"old": old.key_id, "new": new.key_id, "templates": count, "snapshot_bytes": size}


def _audit_bulk(db: Any, command: str, **details: Any) -> None:
    """One ``bulk_decrypt`` audit entry (actor ``cli``, subject ``palm_templates``) for a
    run of ``command`` that decrypted every stored template; ``details``: counts and
    outcome (ids of persons never). Raises what the audit log raises."""
    from storefront.clock import utc_now
    from storefront.security.audit import Audit

    Audit(db, utc_now).record(actor="cli", action="bulk_decrypt", subject="palm_templates",
                              details={"command": command, **details})


def _template_count(db: Any) -> int:
    """Stored palm templates (the progress bar's total)."""
    import sqlalchemy as sa

    from storefront.db.models import PalmTemplate

    with db() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(PalmTemplate)) or 0)


@identity_app.command("retired")
def retired(
    purge: Annotated[bool, typer.Option("--purge", help="Delete the retired templates "
                                        "(asks for confirmation unless --yes).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Purge without asking (with --purge).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
    = False,
) -> None:
    """List persons whose stored palm templates are of a retired format version (1, 2):
    they are not identified until they enrol again. ``--purge`` deletes exactly those
    templates (usable ones are kept); a person left with no template is removed and their
    data key shredded; a person who also has unreadable templates is skipped. Each purged
    person gets a "delete" audit entry (actor "cli"); every run one "bulk_decrypt" entry
    (subject "palm_templates", the counts scanned).

    Every template is decrypted once to read its authenticated format version (see
    :mod:`identity.retired`); templates that cannot be decrypted are counted as
    unreadable and never purged. Exit code 2 on bad options or a key/database error,
    1 when the confirmation is declined.
    """
    if yes and not purge:
        raise typer.BadParameter("it applies only with --purge", param_hint="'--yes'")
    if purge and as_json and not yes:
        raise typer.BadParameter("--purge --json needs --yes (no confirmation prompt in "
                                 "JSON output)", param_hint="'--json'")
    from sqlalchemy.exc import SQLAlchemyError

    from storefront.errors import StorefrontError

    try:
        with _retired_store() as store:
            report, purged = _retired(store, purge=purge, yes=yes, as_json=as_json)
    except (IdentityError, StorefrontError, SQLAlchemyError, OSError) as exc:
        raise fail(reason_of(exc)) from exc  # one line, setting named, password masked
    if as_json:
        typer.echo(json.dumps(_retired_json(report, purged), indent=2))
    elif purged is not None:
        _print_purged(purged)


@dataclass(frozen=True)
class _RetiredStore:
    """What ``identity retired`` works on: the template table, the service's protector
    (a data key per person), the audit log and the palm-index snapshot file."""

    repository: TemplateRepository
    cipher: TemplateProtector
    audit: Audit
    snapshot: Path


@contextmanager
def _retired_store() -> Iterator[_RetiredStore]:
    """Open the database of the settings (migrated) and the KEK files, as ``bootstrap``
    wires them (without rebuilding the palm index). Nothing is created: a database
    without the storefront's tables (a SQLite file that does not exist, a wrong URL)
    raises NotFound and a missing key file KeyFileError, rather than reporting an empty
    store made up on the spot (and a fresh KEK that decrypts nothing)."""
    from sqlalchemy.orm import sessionmaker

    from identity.errors import KeyFileError
    from storefront.bootstrap import palm_index_snapshot_path
    from storefront.clock import utc_now
    from storefront.db.existing import existing_database, require_database_file
    from storefront.db.models import PalmTemplate
    from storefront.security.audit import Audit
    from storefront.settings import Settings
    from storefront.subject_keys import (
        KekFiles,
        ReloadingKeyProvider,
        SqlSubjectKeyStore,
        StoreKeyring,
    )
    from storefront.templates_repo import SqlTemplateRepository

    settings = Settings()
    url = settings.resolved_database_url()
    require_database_file(url)  # before the key file: the database is the first thing asked
    files = KekFiles(settings.resolved_key_file())
    if not files.current.is_file():
        raise KeyFileError(f"key file {files.current} does not exist (check "
                           f"STOREFRONT_KEY_FILE); nothing was created")
    from storefront.cli_errors import reported_errors, require_kek_opens_store

    with reported_errors(settings):  # a wrong key: every template would read "unreadable"
        require_kek_opens_store(settings)
    with existing_database(url, PalmTemplate.__tablename__, "palm templates") as engine:
        db = sessionmaker(engine, expire_on_commit=False)
        provider = ReloadingKeyProvider(files,
                                        development=settings.environment == "development")
        yield _RetiredStore(SqlTemplateRepository(db),
                            StoreKeyring(provider, SqlSubjectKeyStore(db)),
                            Audit(db, utc_now), palm_index_snapshot_path(settings))


def _retired(store: _RetiredStore, *, purge: bool, yes: bool,
             as_json: bool) -> tuple[RetiredReport, PurgeResult | None]:
    """Scan, show (unless JSON), and purge when asked and confirmed."""
    from identity.retired import scan_retired

    report = scan_retired(store.repository, store.cipher)
    store.audit.record(actor="cli", action="bulk_decrypt", subject="palm_templates",
                       details={"command": "identity retired", "persons": report.persons_scanned,
                                "templates": report.templates_scanned,
                                "usable": report.usable, "purge": purge})
    if not as_json:
        _print_retired(report)
    if not purge:
        return report, None
    purgeable = [s for s in report.affected if not s.unreadable]
    if purgeable and not yes:
        typer.confirm(f"Delete {sum(s.retired_total for s in purgeable)} retired "
                      f"template(s) of {len(purgeable)} person(s)?", abort=True)
    return report, _purge(store, report)


def _purge(store: _RetiredStore, report: RetiredReport) -> PurgeResult:
    """Purge ``report``'s retired templates, one audit entry per person. The index
    snapshot is deleted first (one written before v3 may hold retired rows; the next
    start rebuilds it), as :meth:`identity.service.IdentityService.delete` does."""
    from identity.retired import purge_retired

    def audited(done: PurgedSubject) -> None:
        if done.deleted or done.removed:
            store.audit.record(actor="cli", action="delete",
                               subject=f"shopper:{done.subject_id}",
                               details={"what": "retired palm templates",
                                        **_purged_json(done)})

    if report.affected:
        store.snapshot.unlink(missing_ok=True)
    return purge_retired(store.repository, store.cipher, report, on_subject=audited)


def _versions(by_version: Mapping[int, int]) -> dict[str, int]:
    """Format version -> count with string keys (JSON objects)."""
    return {str(v): n for v, n in sorted(by_version.items())}


def _purged_json(done: PurgedSubject) -> dict[str, Any]:
    """One purged person (JSON output and audit details; ids and counts only)."""
    return {"subject_id": done.subject_id, "templates": done.deleted,
            "by_version": _versions(done.by_version), "kept": done.kept,
            "removed_with_data_key": done.removed}


def _retired_json(report: RetiredReport, purged: PurgeResult | None) -> dict[str, Any]:
    """The ``--json`` document: ``persons``, ``summary`` and ``purged`` (null unless
    ``--purge``); format versions are string keys."""
    persons = [{"subject_id": s.subject_id, "retired": _versions(s.retired),
                "usable": s.usable, "unreadable": s.unreadable} for s in report.subjects]
    summary = {"persons_scanned": report.persons_scanned,
               "templates_scanned": report.templates_scanned,
               "usable_templates": report.usable, "affected_persons": len(report.affected),
               "retired_templates": _versions(report.retired_by_version),
               "unreadable_templates": report.unreadable}
    done = None if purged is None else {
        "templates_deleted": purged.deleted,
        "persons": [_purged_json(p) for p in purged.subjects],
        "skipped_unreadable": list(purged.skipped)}
    return {"persons": persons, "summary": summary, "purged": done}


def _print_retired(report: RetiredReport) -> None:
    """The table of persons with retired or unreadable templates, then the summary line."""
    versions = sorted(report.retired_by_version)
    if report.subjects:
        table = Table(title="persons with retired or unreadable palm templates")
        table.add_column("subject", no_wrap=True)
        for v in versions:
            table.add_column(f"v{v}", justify="right")
        table.add_column("usable", justify="right")
        table.add_column("unreadable", justify="right")
        for s in report.subjects:
            table.add_row(s.subject_id, *(str(s.retired.get(v, 0)) for v in versions),
                          str(s.usable), str(s.unreadable))
        console.print(table)
    split = ", ".join(f"v{v}: {n}" for v, n in report.retired_by_version.items()) or "none"
    console.print(f"{len(report.affected)} of {report.persons_scanned} person(s) have "
                  f"{sum(report.retired_by_version.values())} retired template(s) ({split}); "
                  f"{report.unreadable} unreadable; {report.templates_scanned} template(s) "
                  f"scanned", soft_wrap=True)


def _print_purged(purged: PurgeResult) -> None:
    removed = sum(1 for p in purged.subjects if p.removed)
    console.print(f"purged {purged.deleted} retired template(s) of {len(purged.subjects)} "
                  f"person(s); {removed} person(s) had no template left and were removed "
                  f"with their data key", soft_wrap=True)
    if purged.skipped:
        console.print(f"[yellow]skipped {len(purged.skipped)} person(s) who also have "
                      f"unreadable templates (look at them first): "
                      f"{', '.join(purged.skipped)}[/yellow]", soft_wrap=True)
