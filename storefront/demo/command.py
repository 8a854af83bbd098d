"""``storefront demo``: set up a store, run the day with a progress bar, report."""

from __future__ import annotations

import json
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


def run_demo(*, palms: Path | None, baskets: Path | None, shoppers: int, seed: int,
             report_path: Path | None, data_dir: Path | None, decline_rate: float,
             console: Console, broker: str | None = None) -> dict[str, Any]:
    """Run the store day and return the report (also written to ``report_path``).

    ``broker`` (``mqtt://host:port``): the gate and carts talk through that MQTT
    broker to a gateway in this process. Raises InvalidInput for a bad URL or an
    unreachable broker.
    """
    started = time.perf_counter()
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
    if report_path is not None:
        report_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    console.print(summary_table(result))
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
