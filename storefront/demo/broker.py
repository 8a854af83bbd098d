"""The demo's devices over a real MQTT broker (``storefront demo --broker mqtt://...``).

The gate's palm scanner and each shopper's smart cart are :class:`DeviceClient`\\ s
with registered keys; they publish signed messages through the broker to a gateway
running in this process on the same container, which routes them into the same
services as the in-process demo and answers with commands. The demo waits for each
answer, so the store day and its report are the same as without a broker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hardware.commands import Command, OpenGateCommand
from hardware.messages import ItemEventMessage, Message
from hardware.settings import MqttSettings
from hardware.simulators.device import DeviceClient
from hardware.simulators.gate import GateSimulator
from storefront.bootstrap import Container
from storefront.devices.registry import DeviceRegistry
from storefront.devices.routing import RouteResult
from storefront.devices.service import device_registry, start_consumer, unique_client_id
from storefront.errors import InvalidInput
from storefront.gates import EntryDecision

GATE_DEVICE = "gate-entry"


class BrokerDevices:
    """Gate and carts talking to an in-process gateway through the broker at ``url``."""

    def __init__(self, container: Container, url: str, buffer_dir: Path, *,
                 timeout_s: float = 60.0) -> None:
        self._container = container
        self._url = url
        self._buffers = buffer_dir
        self._timeout = timeout_s
        self._store = container.settings.store_id
        self._done = threading.Condition()
        self._results: dict[tuple[str, int], RouteResult] = {}
        self._per_device: Counter[str] = Counter()
        self._outcomes: dict[str, Counter[str]] = {}
        self._registry: DeviceRegistry = device_registry(container)
        mqtt = MqttSettings(url=url, client_id=unique_client_id("demo-gateway"))
        self._consumer = start_consumer(container, mqtt, observer=self._observe)
        if not self._consumer.link.wait_connected(10.0):
            self._consumer.link.stop()
            raise InvalidInput(f"cannot connect to the MQTT broker at {url}")
        self.gates_opened = 0
        self._gate_sim = GateSimulator(GATE_DEVICE, seed=1, clock_start=datetime.now(UTC))
        self._gate = self._device(GATE_DEVICE, "gate")

    def _device(self, device_id: str, kind: str) -> DeviceClient:
        key = self._registry.add(store_id=self._store, device_id=device_id, kind=kind)
        client = DeviceClient(store=self._store, device_id=device_id, key=key,
                              settings=MqttSettings(url=self._url,
                                                    client_id=unique_client_id(device_id)),
                              buffer_dir=self._buffers, fsync=False,
                              on_command=self._command)
        if not client.start(10.0):
            raise InvalidInput(f"device {device_id} cannot connect to {self._url}")
        return client

    def _observe(self, message: Message, result: RouteResult) -> None:
        with self._done:
            self._results[(message.device_id, message.device_seq)] = result
            self._per_device[message.device_id] += 1
            self._outcomes.setdefault(message.device_id, Counter())[result.outcome] += 1
            self._done.notify_all()

    def _command(self, command: Command) -> None:
        """Devices verify and count commands; the demo reads decisions from the gateway."""
        if isinstance(command, OpenGateCommand):
            self.gates_opened += 1

    def _wait(self, predicate: object) -> None:
        deadline = time.monotonic() + self._timeout
        with self._done:
            while not predicate():  # type: ignore[operator]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InvalidInput("the gateway did not answer in time through the broker")
                self._done.wait(left)

    def enter(self, image: bytes) -> EntryDecision | None:
        """Present a palm at the entry gate; the decision, or None for an unusable capture."""
        capture = self._gate_sim.capture(image, "entry")
        self._gate.send(capture)
        key = (GATE_DEVICE, capture.device_seq)
        self._wait(lambda: key in self._results)
        detail = self._results[key].detail
        return detail if isinstance(detail, EntryDecision) else None

    def shop(self, device_id: str, deliveries: Sequence[ItemEventMessage]) -> Counter[str]:
        """Send a cart's deliveries (duplicates included); outcome counts once all are handled."""
        cart = self._device(device_id, "cart")
        try:
            for message in deliveries:
                cart.send(message)
            self._wait(lambda: self._per_device[device_id] >= len(deliveries))
        finally:
            cart.stop()
        with self._done:
            return Counter(self._outcomes.get(device_id, Counter()))

    def close(self) -> None:
        """Disconnect the gate and the gateway."""
        self._gate.stop()
        self._consumer.gateway.stopping.set()
        self._consumer.link.stop()
