"""``storefront demo``: set up a store, run the day with a progress bar, report.

Before any work the demo checks its outputs: ``--report`` must name a file in an existing
folder, and ``--data-dir`` must not hold a store yet (a new or empty folder is best). A
folder that already holds one (a previous demo's, or a real one) is refused: the demo's
report describes one fresh store day, and a second run of the same shoppers into the
same store would have every palm refused as already enrolled.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from storefront.baskets import Basket, load_baskets
from storefront.bootstrap import bootstrap
from storefront.builtin_catalog import builtin_items, synthetic_baskets
from storefront.catalog import CatalogueItem
from storefront.demo.clock import DemoClock, day_start
from storefront.demo.palms import PalmPerson, manifest_people, synthetic_people
from storefront.demo.runner import DayPlan, run_day
from storefront.errors import InvalidInput
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings


def _baskets(path: Path | None, count: int, seed: int,
             extra: dict[str, Any]) -> tuple[list[CatalogueItem], list[Basket]]:
    if path is None:
        items = builtin_items()
        return items, synthetic_baskets(count, seed, items)
    loaded = load_baskets(path)
    extra["baskets_available"] = len(loaded.baskets)
    extra["invoices_read"] = loaded.invoices_read
    extra["invoices_skipped"] = dict(loaded.skipped)
    if not loaded.baskets:
        raise InvalidInput(f"{path}: no usable invoice (skipped: {dict(loaded.skipped)})")
    rng = random.Random(seed)
    chosen = [loaded.baskets[rng.randrange(len(loaded.baskets))] for _ in range(count)]
    return loaded.items, chosen


def _people(palms: Path | None, count: int, seed: int) -> list[PalmPerson]:
    if palms is None:
        return synthetic_people(count, seed)
    people = manifest_people(palms, count, seed)
    return people


STORE_FILES = ("storefront.db", "keys", "index")
"""What a store keeps in its data folder (database, key files, palm-index snapshot)."""


def check_report_path(path: Path) -> None:
    """Refuse (InvalidInput) a report path that cannot be written, before the run starts:
    its folder must exist and be a writable folder, and the path must not be a folder."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInput(f"cannot write the report to {path}: the folder {folder} {what}")
    if path.is_dir():
        raise InvalidInput(f"cannot write the report to {path}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise InvalidInput(f"cannot write the report to {path}: permission denied")


def check_data_dir(path: Path) -> None:
    """Refuse (InvalidInput) a ``--data-dir`` that is not a folder or already holds a
    store (any of :data:`STORE_FILES`); other files in it are left alone."""
    if not path.exists():
        return
    if not path.is_dir():
        raise InvalidInput(f"--data-dir {path} is not a folder")
    held = [name for name in STORE_FILES if (path / name).exists()]
    if held:
        raise InvalidInput(
            f"--data-dir {path} already holds a store ({', '.join(held)}), e.g. from a "
            f"previous demo; its shoppers' palms would be refused as already enrolled. "
            f"Give a new or empty folder, or delete this one")


def write_report(path: Path, result: dict[str, Any]) -> None:
    """Write the JSON report; raises InvalidInput if the file cannot be written."""
    try:
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise InvalidInput(f"cannot write the report to {path}: "
                           f"{exc.strerror or exc}") from exc


def run_demo(*, palms: Path | None, baskets: Path | None, shoppers: int, seed: int,
             report_path: Path | None, data_dir: Path | None, decline_rate: float,
             console: Console, broker: str | None = None) -> dict[str, Any]:
    """Run the store day and return the report (also written to ``report_path``).

    ``broker`` (``mqtt://host:port``): the gate and carts talk through that MQTT
    broker to a gateway in this process. Raises InvalidInput for a bad URL or an
    unreachable broker.

    Before the run: ``report_path`` must be writable (its folder exists) and ``data_dir``
    must not hold a store yet (one holding a previous demo's store is refused, since its
    shoppers are enrolled already; give a new or empty folder); InvalidInput otherwise.
    The summary table is printed before the report is written, so a report that still
    cannot be written (InvalidInput) loses no result. Enrolment refusals are counted by
    reason in the report's ``enrolment_failure_reasons``.
    """
    started = time.perf_counter()
    if report_path is not None:
        check_report_path(report_path)
    if data_dir is not None:
        check_data_dir(data_dir)
    extra: dict[str, Any] = {"palms": str(palms or "synthetic"),
                             "baskets": str(baskets or "built-in catalogue"), "seed": seed}
    people = _people(palms, shoppers, seed)
    items, chosen = _baskets(baskets, len(people), seed, extra)
    with tempfile.TemporaryDirectory(prefix="storefront-demo-") as tmp:
        settings = Settings(data_dir=data_dir or Path(tmp), database_url=None,
                            payment_decline_rate=decline_rate, payment_seed=seed)
        if broker:  # a store id of its own, so runs on a shared broker never mix
            settings = settings.model_copy(update={"store_id": f"demo-{uuid.uuid4().hex[:8]}"})
        start = day_start(len(people))
        clock = DemoClock(start)
        container = bootstrap(settings, clock=clock, processor=SimulatedProcessor(
            seed=seed, decline_rate=decline_rate))
        try:
            container.catalogue.upsert(items)
            plan = DayPlan(people=people, baskets=chosen, seed=seed, clock=clock,
                           day_start=start)
            devices = _broker_devices(container, broker, Path(tmp)) if broker else None
            try:
                report = _run_with_progress(container, plan, console, devices)
            finally:
                if devices is not None:
                    devices.close()
        finally:
            container.close()
    report.extra.update(extra)
    if broker:
        report.extra["broker"] = broker
    report.extra["duration_s"] = round(time.perf_counter() - started, 2)
    result: dict[str, Any] = report.as_dict()
    console.print(summary_table(result))
    if report_path is not None:
        write_report(report_path, result)
    return result


def _broker_devices(container: Any, broker: str, folder: Path) -> Any:
    from hardware.settings import parse_broker_url
    from storefront.demo.broker import BrokerDevices

    try:
        parse_broker_url(broker)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return BrokerDevices(container, broker, folder / "device-buffers")


def _run_with_progress(container: Any, plan: DayPlan, console: Console,
                       devices: Any = None) -> Any:
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        enrol = progress.add_task("Enrolling palms", total=len(plan.people))
        shop = progress.add_task("Store day", total=len(plan.people))

        def step(kind: str) -> None:
            progress.advance(enrol if kind == "enrol" else shop)

        return run_day(container, plan, step, devices)


def summary_table(report: dict[str, Any]) -> Table:
    """The report as a two-column rich table."""
    table = Table(title="storefront demo: store day")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in sorted(report):
        value = report[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "-"
        table.add_row(key, str(value))
    return table
