"""Signed frames: HMAC over the canonical encoding, replay window and nonces."""

from __future__ import annotations

import json

import pytest

from hardware.auth import ReplayGuard, canonical_json, decode_frame, new_device_key, seal, verify
from hardware.errors import AuthenticationFailed, InvalidMessage, ReplayedMessage, StaleMessage

KEY = bytes(range(32))
TOPIC = "stores/s1/devices/cart-1/events"
BODY = {"type": "heartbeat", "device_id": "cart-1", "device_seq": 3, "uptime_s": 5,
        "device_time": "2026-03-02T09:00:00Z", "schema_version": 1}
NOW = 1_800_000_000_000


def test_a_sealed_frame_verifies_and_round_trips() -> None:
    raw = seal(KEY, TOPIC, BODY, ts_ms=NOW, nonce="ab" * 16)
    frame = decode_frame(raw, max_bytes=10_000)
    verify(frame, KEY, TOPIC)
    assert frame.body == BODY and frame.ts == NOW and frame.nonce == "ab" * 16


def test_the_mac_is_over_the_canonical_encoding_not_the_bytes() -> None:
    frame = json.loads(seal(KEY, TOPIC, BODY, ts_ms=NOW))
    reordered = json.dumps(dict(reversed(list(frame.items()))), indent=2).encode()
    verify(decode_frame(reordered, 10_000), KEY, TOPIC)


@pytest.mark.parametrize("change", ["key", "topic", "body", "ts"])
def test_any_change_fails_authentication(change: str) -> None:
    frame = json.loads(seal(KEY, TOPIC, BODY, ts_ms=NOW))
    key, topic = KEY, TOPIC
    if change == "key":
        key = new_device_key()
    elif change == "topic":
        topic = "stores/s1/devices/cart-2/events"
    elif change == "body":
        frame["body"]["device_seq"] = 4
    else:
        frame["ts"] += 1
    with pytest.raises(AuthenticationFailed):
        verify(decode_frame(canonical_json(frame), 10_000), key, topic)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"v": 1}', b"\xff\xfe", b"NaN",
                                 b"[" * 100_000, b'{"v":1,"alg":"HMAC-SHA256","ts":1.5,'
                                 b'"nonce":"00","body":{},"mac":"00"}'])
def test_malformed_frames_are_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_frame(raw, max_bytes=1_000_000)
    assert info.value.reason


def test_oversized_frames_are_refused_before_parsing() -> None:
    with pytest.raises(InvalidMessage, match="over the 100 limit"):
        decode_frame(b"x" * 101, max_bytes=100)


def test_replay_guard_refuses_stale_frames_and_repeated_nonces() -> None:
    guard = ReplayGuard(window_ms=60_000)
    fresh = decode_frame(seal(KEY, TOPIC, BODY, ts_ms=NOW + 30_000), 10_000)
    assert guard.check("cart-1", fresh, NOW) == 30_000  # skewed clock: tolerated, measured
    with pytest.raises(ReplayedMessage):
        guard.check("cart-1", fresh, NOW + 1)
    stale = decode_frame(seal(KEY, TOPIC, BODY, ts_ms=NOW - 61_000), 10_000)
    with pytest.raises(StaleMessage):
        guard.check("cart-1", stale, NOW)


def test_replay_guard_forgets_nonces_outside_the_window() -> None:
    guard = ReplayGuard(window_ms=1_000, max_nonces=10)
    for n in range(50):
        frame = decode_frame(seal(KEY, TOPIC, BODY, ts_ms=NOW + n * 100), 10_000)
        guard.check("cart-1", frame, NOW + n * 100)
    assert len(guard._seen) <= 10
