"""MQTT topic layout: ``stores/{store}/devices/{device}/{channel}``.

Devices publish their messages (:mod:`hardware.messages`) on the ``events``
channel and receive commands on ``commands``. Store and device segments use the
identifier alphabet ``[A-Za-z0-9._-]`` (1-64 characters), so they can never hold
a level separator ``/``, an MQTT wildcard ``+``/``#`` or a ``$``-prefixed system
topic.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NamedTuple, get_args

from hardware.errors import InvalidMessage
from hardware.messages import ID_PATTERN

Channel = Literal["events", "commands"]
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)

_ID = re.compile(ID_PATTERN)
_MAX_TOPIC_CHARS: Final = 256


class TopicParts(NamedTuple):
    """The three variable parts of a device topic."""

    store: str
    device: str
    channel: Channel


def _check_segment(what: str, value: str) -> None:
    if not _ID.fullmatch(value):
        raise InvalidMessage(f"{what} {value[:80]!r} is not 1-64 characters of [A-Za-z0-9._-]")


def device_topic(store: str, device: str, channel: Channel) -> str:
    """The topic of one device's ``channel`` in ``store``.

    Raises :class:`~hardware.errors.InvalidMessage` if ``store`` or ``device`` is
    not a valid identifier, or ``channel`` is unknown.
    """
    _check_segment("store", store)
    _check_segment("device", device)
    if channel not in CHANNELS:
        raise InvalidMessage(f"unknown channel {channel!r}; expected one of {CHANNELS}")
    return f"stores/{store}/devices/{device}/{channel}"


def events_topic(store: str, device: str) -> str:
    """Where ``device`` in ``store`` publishes its messages. Raises InvalidMessage on bad ids."""
    return device_topic(store, device, "events")


def commands_topic(store: str, device: str) -> str:
    """Where ``device`` in ``store`` receives commands. Raises InvalidMessage on bad ids."""
    return device_topic(store, device, "commands")


def events_subscription(store: str) -> str:
    """The subscription filter matching every device's events in ``store`` (one ``+``).

    Raises :class:`~hardware.errors.InvalidMessage` if ``store`` is not a valid identifier.
    """
    _check_segment("store", store)
    return f"stores/{store}/devices/+/events"


def parse_topic(topic: str) -> TopicParts:
    """Split a concrete device topic into its store, device and channel.

    Raises :class:`~hardware.errors.InvalidMessage` if the topic does not follow
    ``stores/{store}/devices/{device}/{channel}`` exactly: wrong number of levels,
    wrong fixed words, invalid identifiers (including wildcards and empty levels),
    an unknown channel, or more than 256 characters.
    """
    if len(topic) > _MAX_TOPIC_CHARS:
        raise InvalidMessage(f"topic is longer than {_MAX_TOPIC_CHARS} characters")
    levels = topic.split("/")
    if len(levels) != 5 or levels[0] != "stores" or levels[2] != "devices":
        raise InvalidMessage(
            f"topic {topic!r} is not stores/{{store}}/devices/{{device}}/{{channel}}"
        )
    _, store, _, device, channel = levels
    _check_segment("store", store)
    _check_segment("device", device)
    if channel == "events":
        return TopicParts(store, device, "events")
    if channel == "commands":
        return TopicParts(store, device, "commands")
    raise InvalidMessage(f"unknown channel {channel[:80]!r}; expected one of {CHANNELS}")


def dead_letter_topic(store: str) -> str:
    """Where the gateway of ``store`` publishes payloads it could not accept, with the reason.

    Raises :class:`~hardware.errors.InvalidMessage` if ``store`` is not a valid identifier.
    """
    _check_segment("store", store)
    return f"stores/{store}/gateway/dead-letter"


def device_acl_pattern(store: str, device: str) -> str:
    """The topic filter a device's broker ACL grants it: ``stores/{store}/devices/{device}/#``.

    Raises :class:`~hardware.errors.InvalidMessage` on invalid identifiers.
    """
    _check_segment("store", store)
    _check_segment("device", device)
    return f"stores/{store}/devices/{device}/#"
