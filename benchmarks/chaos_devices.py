"""Reliability of store devices over MQTT under chaos (issue 8).

Starts its own Mosquitto on a free loopback port (password file, per-device ACL,
persistence on), registers N smart carts, opens their shopping sessions, runs the
gateway (``storefront devices run``) as a separate process, and sends the carts'
item events through a lossy network (duplicates, reordering). Mid-run the broker is
restarted (devices buffer on disk meanwhile) and the gateway process is killed
(SIGKILL) and started again. Then hostile traffic: forged signatures, unknown
devices, topics outside a device's ACL, misdirected payloads, oversized and
malformed payloads. Finally every session's cart is compared with its basket.

    python benchmarks/chaos_devices.py --json benchmarks/results/chaos_devices.json

Must hold: lost = double_counted = 0 and carts_exact = carts; every hostile message
refused and counted (by the gateway's audit table, or by the broker for ACL denials).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_report import print_and_save
from pydantic import SecretStr

from cart.sql_event_store import cart_events
from hardware.auth import new_device_key
from hardware.messages import MAX_MESSAGE_BYTES, ItemEventMessage
from hardware.mqtt import MqttLink, PublishedHandler
from hardware.settings import MqttSettings
from hardware.simulators import LossyNetwork, SmartCartSimulator
from hardware.simulators.device import DeviceClient
from hardware.topics import events_topic
from storefront.bootstrap import Container, bootstrap
from storefront.builtin_catalog import builtin_items
from storefront.devices.journal import GatewayJournal
from storefront.devices.mosquitto import MosquittoProcess, acl_text, write_password_file
from storefront.devices.service import device_registry
from storefront.settings import Settings

STORE = "chaos"
GATEWAY_USER = "storefront-gateway"
HOSTILE_EACH = 10
NOT_AUTHORIZED = 0x87
"""MQTT 5 PUBACK reason code of a publish the broker's ACL refused."""
POLL_S = 0.1


class Trip:
    """One cart trip: its session, basket and the events the cart sent."""

    def __init__(self, session_id: str, basket: dict[str, int],
                 events: list[ItemEventMessage]) -> None:
        self.session_id, self.basket, self.events = session_id, basket, events


def _plan(c: Container, devices: list[str], unique_events: int, seed: int
          ) -> dict[str, list[Trip]]:
    """Trips per device until the devices have ``unique_events`` events between them."""
    rng = random.Random(seed)
    codes = [item.code for item in builtin_items()]
    start = time.time()
    from datetime import UTC, datetime
    clock = datetime.fromtimestamp(start - 3600, UTC)
    per_device = unique_events // len(devices)
    plan: dict[str, list[Trip]] = {}
    for device in devices:
        cart = SmartCartSimulator(device, seed=rng.randrange(2**31), clock_start=clock)
        trips: list[Trip] = []
        while cart.next_seq < per_device:
            basket = {code: rng.randint(1, 3) for code in rng.sample(codes, rng.randint(8, 16))}
            # One shopper per trip: a shopper is in the store once (entering again sends
            # a session still open to the staffed checkout).
            shopper = c.shoppers.register(display_name=f"Chaos shopper {len(trips)}",
                                          payment_token=f"tok_chaos_{device}_{len(trips)}")
            session = c.gates.open_session(shopper_id=shopper.id, entry_method="app")
            events = cart.trip(session, sorted(basket.items()), put_back_rate=0.3,
                               catalogue_codes=codes)
            trips.append(Trip(session, basket, events))
        plan[device] = trips
    return plan


def _credentials(folder: Path, devices: list[str]) -> dict[str, str]:
    users = {name: secrets.token_urlsafe(16) for name in [GATEWAY_USER, *devices, "ghost"]}
    write_password_file(folder / "passwd", users)
    (folder / "acl").write_text(acl_text(STORE, [*devices, "ghost"], GATEWAY_USER)
                                + f"user auditor\ntopic read stores/{STORE}/gateway/#\n")
    return users


def _start_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    code = "from storefront.cli import main; main()"
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-c", code, "devices", "run",
                                 "--report-every", "2"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _gateway_env(store_dir: Path, broker: MosquittoProcess, password: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"STOREFRONT_STATE_DIR": str(store_dir), "STOREFRONT_STORE_ID": STORE,
                "STOREFRONT_DATABASE_URL": "", "STOREFRONT_MQTT_URL": broker.url,
                "STOREFRONT_MQTT_USERNAME": GATEWAY_USER, "STOREFRONT_MQTT_PASSWORD": password,
                "STOREFRONT_MQTT_CLIENT_ID": f"storefront-gateway-{STORE}"})
    env.pop("STOREFRONT_DATABASE_URL")
    return env


def _wait_subscribed(broker: MosquittoProcess, timeout_s: float) -> None:
    """Wait for the gateway's first subscription: its persistent session then exists."""
    deadline = time.monotonic() + timeout_s
    while broker.log_count(f"Sending SUBACK to storefront-gateway-{STORE}") == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not subscribe in time")
        time.sleep(POLL_S)


def _wait_disconnected(clients: dict[str, DeviceClient], timeout_s: float) -> None:
    """Wait until every device has noticed that the broker went away."""
    deadline = time.monotonic() + timeout_s
    while any(cl.link.connected.is_set() for cl in clients.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("devices did not notice the broker stop in time")
        time.sleep(0.01)


def _device_clients(plan: dict[str, list[Trip]], keys: dict[str, bytes],
                    users: dict[str, str], broker: MosquittoProcess,
                    buffers: Path, seed: int) -> dict[str, DeviceClient]:
    rng = random.Random(seed + 1)
    from datetime import timedelta
    clients = {}
    for device in plan:
        skew = timedelta(milliseconds=rng.randint(-90_000, 90_000))  # clocks off by up to 90 s
        settings = MqttSettings(url=broker.url, username=device,
                                password=SecretStr(users[device]),
                                client_id=f"dev-{device}")
        clients[device] = DeviceClient(store=STORE, device_id=device, key=keys[device],
                                       settings=settings, buffer_dir=buffers,
                                       clock_skew=skew, fsync=False)
    for client in clients.values():
        client.start(0)
    for client in clients.values():
        client.link.wait_connected(10)
    return clients


def _deliveries(plan: dict[str, list[Trip]], dup: float, reorder: float, seed: int
                ) -> dict[str, list[ItemEventMessage]]:
    out = {}
    for index, (device, trips) in enumerate(plan.items()):
        network = LossyNetwork(seed=seed + index, duplicate_rate=dup, reorder_rate=reorder)
        out[device] = list(network.deliver([e for t in trips for e in t.events]).messages)
    return out


def _send_with_chaos(clients: dict[str, DeviceClient],
                     deliveries: dict[str, list[ItemEventMessage]], broker: MosquittoProcess,
                     restart_gateway: Any) -> dict[str, float]:
    """Round-robin sends; restart the broker at 30% and kill the gateway at 60%."""
    total = sum(len(d) for d in deliveries.values())
    sent = 0
    marks: dict[str, float] = {}
    longest = max(len(d) for d in deliveries.values())
    for i in range(longest):
        for device, messages in deliveries.items():
            if i < len(messages):
                clients[device].send(messages[i])
                sent += 1
                if sent == int(total * 0.3):
                    marks["broker_restart_at"] = sent
                    broker.stop()
                    # Devices notice and buffer on disk until they have reconnected.
                    _wait_disconnected(clients, timeout_s=30)
                    broker.start()
                if sent == int(total * 0.6):
                    marks["gateway_kill_at"] = sent
                    restart_gateway()
    return marks


def _outside_acl(broker: MosquittoProcess, user: str, password: str, topic: str,
                 count: int, timeout_s: float) -> int:
    """Publish ``count`` messages as ``user`` on ``topic`` (outside its ACL); return denials.

    Mosquitto answers a QoS 1 publish its ACL refuses with PUBACK 0x87 (not authorized)
    and then closes the connection (MQTT-3.3.5-2 allows either). So one connection
    carries one such publish: a single intruder sending ``count`` of them would get one
    answer per reconnect (paho waits ``reconnect_min_s`` between them), and PUBACKs it
    had not read yet when the broker reset the socket are lost and the messages sent
    again. Each publish gets its own connection, all at once; a denial is counted once
    per publish (connection, message id) and only with reason code 0x87.
    """
    answers: dict[tuple[int, int], int] = {}
    settings = MqttSettings(url=broker.url, username=user, password=SecretStr(password))
    links: list[MqttLink] = []

    def answered(index: int) -> PublishedHandler:
        def record(mid: int, reason: int) -> None:
            answers.setdefault((index, mid), reason)
            # On paho's thread, before the broker's close is read: paho then does not
            # wait its reconnect back-off (which would hold up stop() for up to 1 s).
            links[index].stop()
        return record

    links += [MqttLink(settings, client_id=f"intruder-{user}-{n}", on_published=answered(n))
              for n in range(count)]
    published: set[tuple[int, int]] = set()
    try:
        for link in links:
            link.start()
        deadline = time.monotonic() + timeout_s
        for n, link in enumerate(links):
            link.wait_connected(max(0.0, deadline - time.monotonic()))
            published.add((n, link.publish(topic, b"{}").mid))
        while not published <= answers.keys() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for link in links:
            link.stop()
    return sum(answers.get(key) == NOT_AUTHORIZED for key in published)


def _hostile(clients: dict[str, DeviceClient], keys: dict[str, bytes], users: dict[str, str],
             broker: MosquittoProcess, buffers: Path) -> tuple[Counter[str], int]:
    """Send forged, unknown, out-of-ACL, misdirected, oversized and malformed messages.

    Returns the messages sent per kind and how many out-of-ACL publishes the broker denied.
    """
    a, b = list(clients)[:2]
    sample = ItemEventMessage(device_id=a, device_seq=10**12, device_time=_now(),
                              kind="picked", session_id="ses_none", product_code="X1",
                              quantity=1, confidence=1.0)
    sent: Counter[str] = Counter()
    forger = DeviceClient(store=STORE, device_id=a, key=new_device_key(),
                          settings=MqttSettings(url=broker.url, username=a,
                                                password=SecretStr(users[a]),
                                                client_id=f"forger-{a}"),
                          buffer_dir=buffers / "forger", fsync=False)
    ghost = DeviceClient(store=STORE, device_id="ghost", key=new_device_key(),
                         settings=MqttSettings(url=broker.url, username="ghost",
                                               password=SecretStr(users["ghost"]),
                                               client_id="ghost"),
                         buffer_dir=buffers / "ghost", fsync=False)
    forger.start(10)
    ghost.start(10)
    for n in range(HOSTILE_EACH):
        forger.send(sample.model_copy(update={"device_seq": 10**12 + n}))
        ghost.send(sample.model_copy(update={"device_id": "ghost", "device_seq": n}))
        clients[a].send(sample.model_copy(update={"device_id": b, "device_seq": n}))
        body = sample.model_dump(mode="json") | {"quantity": "5", "device_seq": 2 * 10**12 + n}
        clients[a].send_body(body)  # signed, but not a valid message
        clients[a].link.publish(events_topic(STORE, a), b"{not json" + bytes([n]))
    for n in range(3):
        clients[a].link.publish(events_topic(STORE, a), b"x" * (MAX_MESSAGE_BYTES + 8192 + n))
    # a's credentials on b's events topic: outside a's ACL, the broker denies.
    denied = _outside_acl(broker, a, users[a], events_topic(STORE, b), HOSTILE_EACH,
                          timeout_s=30)
    sent.update({"bad_signature": HOSTILE_EACH, "unknown_device": HOSTILE_EACH,
                 "outside_acl": HOSTILE_EACH, "misdirected": HOSTILE_EACH,
                 "invalid_payload": 2 * HOSTILE_EACH + 3})
    for extra in (forger, ghost):
        extra.wait_flushed(30)
        extra.stop()
    return sent, denied


def _now() -> Any:
    from datetime import UTC, datetime
    return datetime.now(UTC)


def _stored_keys(c: Container, devices: list[str]) -> list[tuple[str, int]]:
    with c.engine.connect() as conn:
        rows = conn.execute(sa.select(cart_events.c.device_id, cart_events.c.device_seq)
                            .where(cart_events.c.device_id.in_(devices),
                                   cart_events.c.type.in_(("item_picked", "item_put_back"))))
        return [(str(d), int(s)) for d, s in rows]


def _stored_count(c: Container, devices: list[str]) -> int:
    """How many item events of ``devices`` are stored (``len(_stored_keys(...))``, cheaper)."""
    with c.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(cart_events)
                                .where(cart_events.c.device_id.in_(devices),
                                       cart_events.c.type.in_(("item_picked", "item_put_back")))
                                ).scalar_one())


def _wait_applied(c: Container, devices: list[str], expected: int, timeout_s: float) -> float:
    """Poll until ``expected`` events are stored or nothing moved for ``timeout_s``."""
    last, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < timeout_s:
        asked = time.monotonic()
        count = _stored_count(c, devices)
        if count >= expected:
            return time.monotonic()
        if count != last:
            last, last_change = count, time.monotonic()
        # The count grows with the store (tens of ms at 50,000 events): poll often, but
        # keep polling under a fifth of a core, which the gateway needs on 2 cores.
        time.sleep(max(POLL_S, 4 * (time.monotonic() - asked)))
    return time.monotonic()


def _measure(c: Container, plan: dict[str, list[Trip]]) -> dict[str, Any]:
    devices = list(plan)
    expected = {(d, e.device_seq) for d, trips in plan.items() for t in trips for e in t.events}
    stored = _stored_keys(c, devices)
    distinct = set(stored)
    carts = exact = 0
    for trips in plan.values():
        for trip in trips:
            carts += 1
            exact += int(c.carts.cart(trip.session_id).lines == trip.basket)
    return {"events_expected": len(expected), "events_applied": len(stored),
            "lost": len(expected - distinct),
            "double_counted": len(stored) - len(distinct) + len(distinct - expected),
            "carts": carts, "carts_exact": exact}


def _audit_after(c: Container, sent: Counter[str], timeout_s: float) -> dict[str, int]:
    """Poll the gateway's audit counts until every audited kind reaches its count in ``sent``.

    Returns the counts then (or at ``timeout_s``).
    """
    journal = GatewayJournal(c.db, _now)
    expected = _audited(sent)
    deadline = time.monotonic() + timeout_s
    counts = journal.audit_counts()
    while time.monotonic() < deadline and any(counts.get(k, 0) < v for k, v in expected.items()):
        time.sleep(POLL_S)
        counts = journal.audit_counts()
    return counts


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole run in ``work``; returns the JSON report."""
    store_dir, broker_dir, buffers = work / "store", work / "broker", work / "buffers"
    broker_dir.mkdir(parents=True)
    c = bootstrap(Settings(data_dir=store_dir, store_id=STORE, database_url=None))
    try:
        c.catalogue.upsert(builtin_items())
        devices = [f"cart-{n:03d}" for n in range(args.devices)]
        registry = device_registry(c)
        keys = {d: registry.add(store_id=STORE, device_id=d, kind="cart") for d in devices}
        users = _credentials(broker_dir, devices)
        unique = int(args.messages / (1 + args.duplicate_rate))
        plan = _plan(c, devices, unique, args.seed)
        deliveries = _deliveries(plan, args.duplicate_rate, args.reorder_rate, args.seed)
        broker = MosquittoProcess(broker_dir, password_file=broker_dir / "passwd",
                                  acl_file=broker_dir / "acl")
        broker.start()
        return _run_live(args, c, plan, deliveries, keys, users, broker, work, buffers)
    finally:
        c.close()


def _run_live(args: argparse.Namespace, c: Container, plan: dict[str, list[Trip]],
              deliveries: dict[str, list[ItemEventMessage]], keys: dict[str, bytes],
              users: dict[str, str], broker: MosquittoProcess, work: Path, buffers: Path
              ) -> dict[str, Any]:
    env = _gateway_env(work / "store", broker, users[GATEWAY_USER])
    log = work / "gateway.log"
    gateway = [_start_gateway(env, log)]
    clients: dict[str, DeviceClient] = {}

    def kill_and_restart() -> None:
        gateway[0].send_signal(signal.SIGKILL)
        gateway[0].wait()
        gateway[0] = _start_gateway(env, log)

    try:
        _wait_subscribed(broker, timeout_s=60)
        clients = _device_clients(plan, keys, users, broker, buffers, args.seed)
        started = time.monotonic()
        marks = _send_with_chaos(clients, deliveries, broker, kill_and_restart)
        for client in clients.values():
            client.wait_flushed(120)
        expected = sum(len(t.events) for trips in plan.values() for t in trips)
        done = _wait_applied(c, list(plan), expected, timeout_s=60)
        elapsed = done - started
        hostile, denied = _hostile(clients, keys, users, broker, buffers)
        audit = _audit_after(c, hostile, timeout_s=60)
        report = _measure(c, plan)
    finally:
        for client in clients.values():
            client.stop()
        gateway[0].send_signal(signal.SIGTERM)
        try:
            gateway[0].wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway[0].kill()
        broker.stop()
    sent = sum(len(d) for d in deliveries.values())
    report.update({
        "devices": len(plan), "messages_sent": sent, "msgs_per_s": round(sent / elapsed, 1),
        "duration_s": round(elapsed, 2), **marks,
        "duplicates_sent": sent - report["events_expected"],
        "buffered_during_outage": sum(cl.buffered for cl in clients.values()),
        "hostile_sent": dict(hostile), "audited": audit,
        "outside_acl_denied_by_broker": denied,
        "broker_denied_log_lines": broker.log_count("Denied PUBLISH"),
    })
    report["hostile_all_refused"] = _all_refused(hostile, audit, denied)
    return report


def _all_refused(sent: Counter[str], audit: dict[str, int], denied: int) -> bool:
    return (denied >= sent["outside_acl"]
            and all(audit.get(k, 0) >= v for k, v in _audited(sent).items()))


def _audited(sent: Counter[str]) -> dict[str, int]:
    """The hostile kinds the gateway must refuse and audit: all but the broker's ACL denials."""
    return {k: v for k, v in sent.items() if k != "outside_acl"}


def main() -> None:
    """Parse arguments, run, print and save the JSON report; exit 1 if a target fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--duplicate-rate", type=float, default=0.1)
    parser.add_argument("--reorder-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the broker, store and gateway log here (must not exist)")
    args = parser.parse_args()
    if args.workdir is not None:
        report = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-devices-") as tmp:
            report = run(args, Path(tmp))
    print_and_save(report, args.json, sort_keys=True)
    ok = (report["lost"] == 0 and report["double_counted"] == 0
          and report["carts_exact"] == report["carts"] and report["hostile_all_refused"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
