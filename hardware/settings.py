"""MQTT configuration of devices and the gateway: one pydantic-settings class.

Every field can be set with an environment variable prefixed ``STOREFRONT_MQTT_``
(for example ``STOREFRONT_MQTT_URL=mqtt://127.0.0.1:1883``) or in a ``.env`` file.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hardware.messages import MAX_MESSAGE_BYTES


class BrokerAddress(NamedTuple):
    """Host and TCP port of an MQTT broker."""

    host: str
    port: int


def parse_broker_url(url: str) -> BrokerAddress:
    """Split ``mqtt://host[:port]`` (default port 1883) into host and port.

    Raises ``ValueError`` for another scheme, a missing host, a path, or a port
    outside 1..65535. TLS (``mqtts://``) is not supported by this build.
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ValueError(f"broker URL must start with mqtt://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r} must not have a path, query or fragment")
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r} has an invalid port") from exc
    return BrokerAddress(parts.hostname, port)


class MqttSettings(BaseSettings):
    """Settings of one MQTT connection (a device's or the gateway's).

    Attributes:
        url: broker as ``mqtt://host:port``.
        username, password: broker credentials (Mosquitto password file), or None.
        client_id: MQTT client id; the gateway's must be stable so that its
            persistent session (queued QoS 1 messages) survives restarts.
        keepalive_s: MQTT keep-alive interval, seconds.
        reconnect_min_s, reconnect_max_s: exponential reconnect back-off bounds, seconds.
        session_expiry_s: MQTT 5 session expiry interval, seconds; the broker keeps the
            session and its queued messages this long after a disconnect.
        max_inflight: QoS 1 messages in flight (sent, not yet acknowledged) per client.
        replay_window_s: a signed frame whose timestamp is further than this from the
            receiver's clock is refused; nonces are remembered this long.
        max_frame_bytes: largest accepted signed frame (the message limit plus room
            for the signature envelope).
    """

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_MQTT_", env_file=".env",
                                      extra="ignore")

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_min_s: int = Field(default=1, ge=1, le=60)
    reconnect_max_s: int = Field(default=16, ge=1, le=600)
    session_expiry_s: int = Field(default=86_400, ge=0, le=2**32 - 1)
    max_inflight: int = Field(default=100, ge=1, le=65_535)
    replay_window_s: float = Field(default=300.0, gt=0, le=86_400)
    max_frame_bytes: int = Field(default=MAX_MESSAGE_BYTES + 4096, ge=1024)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_broker_url(value)
        return value

    def broker(self) -> BrokerAddress:
        """The broker's host and port."""
        return parse_broker_url(self.url)
