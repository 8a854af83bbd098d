"""Topic layout: building, parsing and refusing topics."""

from __future__ import annotations

import pytest

from hardware.errors import InvalidMessage
from hardware.topics import (
    TopicParts,
    commands_topic,
    device_topic,
    events_subscription,
    events_topic,
    parse_topic,
)


def test_topics_have_the_documented_layout() -> None:
    assert events_topic("store-01", "cart.7") == "stores/store-01/devices/cart.7/events"
    assert commands_topic("store-01", "gate_1") == "stores/store-01/devices/gate_1/commands"
    assert events_subscription("store-01") == "stores/store-01/devices/+/events"


@pytest.mark.parametrize("channel", ["events", "commands"])
def test_parse_inverts_build(channel: str) -> None:
    topic = device_topic("s1", "cart-9", channel)  # type: ignore[arg-type]
    parts = parse_topic(topic)
    assert parts == TopicParts("s1", "cart-9", channel)  # type: ignore[arg-type]
    store, device, parsed_channel = parts
    assert (store, device, parsed_channel) == ("s1", "cart-9", channel)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "stores/s1/devices/cart-9",
        "stores/s1/devices/cart-9/events/extra",
        "/stores/s1/devices/cart-9/events",
        "stores/s1/devices/cart-9/events/",
        "store/s1/devices/cart-9/events",
        "stores/s1/device/cart-9/events",
        "stores/s1/devices/cart-9/telemetry",
        "stores/s1/devices/+/events",
        "stores/#",
        "stores/s1/devices/#",
        "stores/+/devices/cart-9/events",
        "stores//devices/cart-9/events",
        "stores/s1/devices//events",
        "stores/s 1/devices/cart-9/events",
        "$SYS/broker/uptime",
        "stores/s1/devices/" + "d" * 65 + "/events",
        "stores/s1/devices/cart-9/events" + "x" * 300,
    ],
)
def test_parse_refuses_anything_else(topic: str) -> None:
    with pytest.raises(InvalidMessage):
        parse_topic(topic)


@pytest.mark.parametrize(
    ("store", "device"), [("", "d"), ("s", ""), ("s/1", "d"), ("s", "+"), ("#", "d"), ("s", "a b")]
)
def test_builders_refuse_bad_segments(store: str, device: str) -> None:
    with pytest.raises(InvalidMessage):
        events_topic(store, device)
    with pytest.raises(InvalidMessage):
        commands_topic(store, device)


def test_builders_refuse_unknown_channel_and_bad_store_filter() -> None:
    with pytest.raises(InvalidMessage, match="unknown channel"):
        device_topic("s1", "d1", "status")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        events_subscription("+")
