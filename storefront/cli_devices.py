"""``storefront devices``: register, list, revoke store devices and rotate their keys,
run the MQTT gateway, prune the gateway's inbox and refusal log."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from storefront.cli_errors import (
    ConfigError,
    cli_errors,
    fail,
    os_reason,
    reason_of,
    require_kek_opens_store,
    require_store,
)
from storefront.settings import Settings

if TYPE_CHECKING:
    from storefront.devices.journal import GatewayJournal, PruneReport
    from storefront.devices.registry import DeviceRegistry

devices_app = typer.Typer(help="Store devices over MQTT (gates, carts, shelf plates).",
                          no_args_is_help=True)
console = Console()


@devices_app.command("add")
@cli_errors
def add(
    device_id: Annotated[str, typer.Argument(help="Device id ([A-Za-z0-9._-], 1-64).")],
    kind: Annotated[str, typer.Option(help="gate, cart, plate or scanner.")] = "cart",
    password_file: Annotated[Path | None, typer.Option(
        help="Mosquitto password file to add the device's broker user to.")] = None,
    acl_file: Annotated[Path | None, typer.Option(
        help="Mosquitto ACL file to rewrite for every device of this store.")] = None,
    gateway_user: Annotated[str, typer.Option(help="Broker user of the gateway (ACL).")]
    = "storefront-gateway",
) -> None:
    """Register a device; prints its HMAC key and broker password once (not stored in clear).

    Exit 2 with one line (:mod:`storefront.cli_errors`) for an id or kind that is not
    valid, a device already registered, ``--password-file`` without mosquitto_passwd
    (refused before anything is changed), a key-encryption key that does not open the
    store's data keys, or a broker file that cannot be written."""
    from storefront.bootstrap import bootstrap
    from storefront.devices.mosquitto import acl_text, add_password
    from storefront.devices.service import device_registry

    _require_mosquitto_passwd(password_file)
    settings = Settings()
    require_kek_opens_store(settings)  # an existing store only; a new one is made below
    container = bootstrap(settings, reconcile_payments=False)  # payments: the server's
    try:
        registry = device_registry(container)
        store = container.settings.store_id
        key = registry.add(store_id=store, device_id=device_id, kind=kind)
        password = secrets.token_urlsafe(24)
        if password_file is not None:
            add_password(password_file, device_id, password)
        if acl_file is not None:
            acl_file.write_text(acl_text(store, [d.id for d in registry.list(store)
                                                 if d.revoked_at is None],
                                         gateway_user), encoding="utf-8")
    finally:
        container.close()
    console.print(f"device {device_id} ({kind}) registered in store {store}")
    console.print(f"hmac key (base64): {base64.b64encode(key).decode()}")
    console.print(f"broker user: {device_id}  password: {password}"
                  + ("" if password_file else "  (add it to the broker's password file)"))


@devices_app.command("revoke")
@cli_errors
def revoke(
    device_id: Annotated[str, typer.Argument(help="The device to revoke.")],
    acl_file: Annotated[Path | None, typer.Option(
        help="Mosquitto ACL file to rewrite without the revoked device.")] = None,
    gateway_user: Annotated[str, typer.Option(help="Broker user of the gateway (ACL).")]
    = "storefront-gateway",
) -> None:
    """Revoke a device (lost or stolen): its signed HTTP requests and MQTT messages are
    refused from now on (running processes within their 30 s device cache); with
    ``--acl-file`` the broker ACL is rewritten without it. Exit 2 for a device not
    registered in this store."""
    from storefront.bootstrap import bootstrap
    from storefront.devices.mosquitto import acl_text
    from storefront.devices.service import device_registry
    from storefront.errors import NotFound

    require_store(Settings(), keys=True)  # a mistyped folder: refused
    container = bootstrap(reconcile_payments=False)  # payments are the server's to settle
    try:
        registry = device_registry(container)
        store = container.settings.store_id
        known = {d.id: d for d in registry.list(store)}
        if device_id not in known:
            raise NotFound(f"device {device_id!r} is not registered in store {store}")
        already = known[device_id].revoked_at is not None
        if not already:
            registry.revoke(device_id)
        if acl_file is not None:
            acl_file.write_text(acl_text(store, [d.id for d in registry.list(store)
                                                 if d.revoked_at is None],
                                         gateway_user), encoding="utf-8")
    finally:
        container.close()
    console.print(f"device {device_id} " + ("was already revoked" if already else "revoked"))


@devices_app.command("rotate-key")
@cli_errors
def rotate_key(
    device_id: Annotated[str, typer.Argument(help="The device to give a new HMAC key.")],
    reinstate: Annotated[bool, typer.Option(
        help="Also lift the device's revocation (a recovered or replaced device).")] = False,
    password_file: Annotated[Path | None, typer.Option(
        help="Mosquitto password file: also give the device a new broker password.")] = None,
    acl_file: Annotated[Path | None, typer.Option(
        help="Mosquitto ACL file to rewrite for every active device of this store.")] = None,
    gateway_user: Annotated[str, typer.Option(help="Broker user of the gateway (ACL).")]
    = "storefront-gateway",
) -> None:
    """Give a device a new HMAC key, printed once and stored encrypted like ``add``'s. The
    old key is refused from now on (running servers and gateways within their 30 s
    device cache, as for ``revoke``). A revoked device is refused (exit 2) unless
    ``--reinstate``. With ``--password-file`` the device also gets a new broker password
    (printed once). Exit 2 for a device not registered in this store; the new key is
    printed before the broker files are written, so a failure there (exit 2) never
    loses it."""
    from storefront.bootstrap import bootstrap
    from storefront.devices.service import device_registry

    _require_mosquitto_passwd(password_file)
    require_store(Settings(), keys=True)  # a mistyped folder: refused
    container = bootstrap(reconcile_payments=False)  # payments are the server's to settle
    try:
        registry = device_registry(container)
        store = container.settings.store_id
        key = registry.rotate_key(store_id=store, device_id=device_id, reinstate=reinstate)
        console.print(f"device {device_id} has a new key"
                      + (" and is not revoked" if reinstate else "")
                      + "; its old key is refused within 30 s")
        console.print(f"hmac key (base64): {base64.b64encode(key).decode()}")
        _rotate_broker_files(registry, store, device_id, password_file, acl_file,
                             gateway_user)
    finally:
        container.close()


def _rotate_broker_files(registry: DeviceRegistry, store: str, device_id: str,
                         password_file: Path | None, acl_file: Path | None,
                         gateway_user: str) -> None:
    """``rotate-key``'s broker steps: a new broker password (printed once) and the ACL of
    the store's active devices. Exit 2 when a file cannot be written."""
    from storefront.devices.mosquitto import acl_text, add_password
    from storefront.errors import StorefrontError

    try:
        if password_file is not None:
            password = secrets.token_urlsafe(24)
            add_password(password_file, device_id, password)
            console.print(f"broker user: {device_id}  password: {password}")
        if acl_file is not None:
            acl_file.write_text(acl_text(store, [d.id for d in registry.list(store)
                                                 if d.revoked_at is None],
                                         gateway_user), encoding="utf-8")
    except (StorefrontError, OSError) as exc:
        why = os_reason(exc) if isinstance(exc, OSError) else exc.reason
        raise fail(f"the new key above is in force, but the broker files were not "
                   f"updated: {why}") from exc


def _require_mosquitto_passwd(password_file: Path | None) -> None:
    """Refuse (ConfigError, before anything is changed) ``--password-file`` when
    mosquitto_passwd, which writes that file, is not installed."""
    if password_file is not None and shutil.which("mosquitto_passwd") is None:
        raise ConfigError("mosquitto_passwd is not installed (it comes with mosquitto); "
                          "nothing was changed")


@devices_app.command("list")
def list_devices(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the devices as one JSON array (times ISO 8601 UTC).")] = False,
) -> None:
    """List the registered devices of this store (never their keys).

    Exit 2 when there is no storefront database at the configured place (nothing is
    created there), the database cannot be read, or the key-encryption key file cannot
    be used (refused before the database is opened: the state folder is left as found).
    """
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import sessionmaker

    from identity.errors import KeyFileError
    from storefront.bootstrap import check_present_key_files
    from storefront.db.existing import existing_database, require_database_file
    from storefront.devices.models import Device
    from storefront.devices.service import registry_over
    from storefront.errors import StorefrontError
    from storefront.settings import Settings

    settings = Settings()
    try:
        require_database_file(settings.resolved_database_url())  # the first thing asked
        check_present_key_files(settings, revocable=False)  # before the database is opened
        with existing_database(settings.resolved_database_url(), Device.__tablename__,
                               "devices") as engine:
            rows = registry_over(sessionmaker(engine, expire_on_commit=False),
                                 settings).list(settings.store_id)
    except (StorefrontError, SQLAlchemyError, KeyFileError) as exc:
        raise fail(reason_of(exc, settings)) from exc  # one line, setting named
    if as_json:
        typer.echo(json.dumps([{
            "id": d.id, "kind": d.kind, "created_at": d.created_at.isoformat(),
            "last_seen_at": d.last_seen_at.isoformat() if d.last_seen_at else None,
            "clock_offset_ms": d.clock_offset_ms,
            "revoked_at": d.revoked_at.isoformat() if d.revoked_at else None} for d in rows]))
        return
    table = Table(title=f"devices of store {settings.store_id}")
    for column in ("id", "kind", "created", "last seen", "clock offset ms", "revoked"):
        table.add_column(column, overflow="fold")  # times are never cut short
    for d in rows:
        table.add_row(d.id, d.kind, d.created_at.isoformat(timespec="seconds"),
                      d.last_seen_at.isoformat(timespec="seconds") if d.last_seen_at else "-",
                      str(d.clock_offset_ms) if d.clock_offset_ms is not None else "-",
                      "yes" if d.revoked_at else "no")
    console.print(table)


@devices_app.command("run")
@cli_errors
def run(
    broker: Annotated[str | None, typer.Option(
        help="Broker URL mqtt://host:port (default STOREFRONT_MQTT_URL).")] = None,
    report_every: Annotated[float, typer.Option(min=0.5, help="Seconds between counter logs.")]
    = 10.0,
) -> None:
    """Run the gateway until SIGINT/SIGTERM: subscribe, authenticate, route, answer."""
    from hardware.settings import MqttSettings
    from storefront.bootstrap import bootstrap
    from storefront.devices.service import run_gateway

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    mqtt = MqttSettings() if broker is None else MqttSettings(url=broker)
    require_store(Settings(), keys=True)  # a mistyped folder: refused
    container = bootstrap(reconcile_payments=False)  # payments are the server's to settle
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        counts = run_gateway(container, mqtt, stop, report_every_s=report_every)
    finally:
        container.close()
    console.print(f"gateway stopped: {counts}")


@devices_app.command("prune")
def prune(
    messages_days: Annotated[int, typer.Option(
        min=1, help="Keep inbox rows (device_messages) this many days.")] = 30,
    audit_days: Annotated[int, typer.Option(
        min=1, help="Keep refused-message rows (device_audit) this many days.")] = 365,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
    = False,
) -> None:
    """Delete inbox rows received more than --messages-days days ago and refusal rows
    written more than --audit-days days ago, in short batches (safe while the gateway
    runs, and idempotent); prints the rows deleted per table. An inbox row still
    "claimed" (a gateway stopped before recording the outcome) is kept until it is older
    than the audit cut as well.

    A message redelivered after its inbox row was pruned is handled again, which is
    safe: a palm capture's signed frame time (within the replay window of its first
    handling) is then older than the window (STOREFRONT_MQTT_REPLAY_WINDOW_S, default
    300 s), so the gateway refuses it (outside_replay_window) before routing and it
    opens no second session; hence the command refuses (exit 2) a --messages-days
    shorter than twice that window. Only a device re-signing an old capture with a fresh
    time would get past that, and a device holding its key can sign a new capture
    anyway. Item events never use the inbox: the cart event log's UNIQUE (device_id,
    device_seq), which this command does not touch, answers them as duplicates. Gate
    events, plate readings and heartbeats only write an inbox row, so one handled again
    is recorded again with no other effect (a later reuse of a pruned sequence number is
    no longer refused as conflicting_duplicate). The broker also drops queued messages
    after its session expiry (STOREFRONT_MQTT_SESSION_EXPIRY_S, default one day).

    Exit 2 for a period below one day, a missing database or a database error.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from hardware.settings import MqttSettings
    from storefront.errors import StorefrontError

    window_s = MqttSettings().replay_window_s
    if messages_days * 86_400 < 2 * window_s:
        raise fail(f"--messages-days {messages_days} is shorter than twice the replay "
                   f"window ({window_s:g} s): a redelivered palm capture could open a "
                   f"second session")
    try:
        with _gateway_journal() as journal:
            report = journal.prune_older_than(messages_days=messages_days,
                                              audit_days=audit_days)
    except (StorefrontError, SQLAlchemyError) as exc:
        raise fail(reason_of(exc)) from exc  # one line, setting named, password masked
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print_pruned(report)


@contextmanager
def _gateway_journal() -> Iterator[GatewayJournal]:
    """The journal over the configured database, migrated, on the system clock. Nothing
    is created: a missing SQLite file or a database without the gateway's tables raises
    NotFound."""
    from sqlalchemy.orm import sessionmaker

    from storefront.clock import utc_now
    from storefront.db.existing import existing_database
    from storefront.devices.journal import GatewayJournal
    from storefront.devices.models import DeviceMessage
    from storefront.settings import Settings

    url = Settings().resolved_database_url()
    with existing_database(url, DeviceMessage.__tablename__, "device_messages") as engine:
        yield GatewayJournal(sessionmaker(engine, expire_on_commit=False), utc_now)


def _print_pruned(report: PruneReport) -> None:
    console.print(f"device_messages: {report.messages_deleted} rows deleted (received "
                  f"before {report.messages_before.isoformat(timespec='seconds')})")
    console.print(f"device_audit: {report.audit_deleted} rows deleted (written before "
                  f"{report.audit_before.isoformat(timespec='seconds')})")
    if report.claimed_kept:
        console.print(f"kept {report.claimed_kept} inbox rows still claimed (handling never "
                      f"settled) until the audit cut")
