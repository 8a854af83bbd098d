"""Build and run the gateway from the composition root's container."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from hardware.auth import ReplayGuard
from hardware.mqtt import MqttLink
from hardware.settings import MqttSettings
from identity import kernels
from storefront.bootstrap import Container
from storefront.clock import utc_now
from storefront.devices.gateway import Gateway, GatewayConsumer, Observer
from storefront.devices.journal import GatewayJournal
from storefront.devices.keys import DeviceKeyring
from storefront.devices.registry import DeviceRegistry
from storefront.devices.routing import Router
from storefront.settings import Settings
from storefront.subject_keys import KekFiles, ReloadingKeyProvider

log = logging.getLogger(__name__)


def device_registry(container: Container) -> DeviceRegistry:
    """The registry over the container's database, keys sealed with the template KEK
    (re-read when ``storefront keys rotate`` changes the key files).

    Raises identity's KeyFileError when the key file is missing outside development.
    """
    return registry_over(container.db, container.settings)


def registry_over(sessions: sessionmaker[Session], settings: Settings) -> DeviceRegistry:
    """:func:`device_registry` over any session factory (e.g. a database opened with
    :func:`storefront.db.existing.existing_database`, without the whole container).

    Raises identity's KeyFileError when the key file is missing outside development.
    """
    provider = ReloadingKeyProvider(KekFiles(settings.resolved_key_file()),
                                    development=settings.environment == "development")
    return DeviceRegistry(sessions, DeviceKeyring(provider), utc_now)


def build_gateway(container: Container, mqtt: MqttSettings, *,
                  observer: Observer | None = None) -> Gateway:
    """A gateway for the container's store, routing into its services."""
    journal = GatewayJournal(container.db, utc_now)
    router = Router(ingest=container.ingest, gates=container.gates, journal=journal,
                    clock=utc_now)
    return Gateway(store_id=container.settings.store_id, registry=device_registry(container),
                   journal=journal, router=router,
                   guard=ReplayGuard(int(mqtt.replay_window_s * 1000)), clock=utc_now,
                   max_frame_bytes=mqtt.max_frame_bytes, observer=observer,
                   max_future_skew=timedelta(
                       seconds=container.settings.device_max_future_skew_s))


def start_consumer(container: Container, mqtt: MqttSettings, *,
                   observer: Observer | None = None) -> GatewayConsumer:
    """Build the gateway and connect it (in the background) with its persistent session.

    The client id is ``mqtt.client_id`` or ``storefront-gateway-{store}``: stable, so the
    broker keeps queued messages for it while it is down.
    """
    gateway = build_gateway(container, mqtt, observer=observer)
    client_id = mqtt.client_id or f"storefront-gateway-{container.settings.store_id}"

    def factory(**kwargs: Any) -> MqttLink:
        return MqttLink(mqtt, client_id=client_id, **kwargs)

    consumer = GatewayConsumer(gateway, factory)
    consumer.link.start()
    return consumer


def run_gateway(container: Container, mqtt: MqttSettings, stop: threading.Event,
                *, report_every_s: float = 10.0) -> dict[str, int]:
    """Serve until ``stop`` is set; logs counters periodically; returns the final counts."""
    kernels.warm_up()  # the palm matcher's compiled loops, before the first palm entry
    consumer = start_consumer(container, mqtt)
    gateway = consumer.gateway
    try:
        while not stop.wait(report_every_s):
            gateway.flush_clocks()
            log.info("gateway %s: %s", gateway.store_id, dict(gateway.counts))
    finally:
        gateway.stopping.set()
        consumer.link.stop()
        gateway.flush_clocks()
    return dict(gateway.counts)


def unique_client_id(prefix: str) -> str:
    """``prefix`` plus 8 random hex digits (for throw-away sessions such as the demo's)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
