"""Frames are signed over RFC 8785 (JCS) canonical JSON, numbers as ECMAScript writes them.

Before, floats were written as Python's ``repr`` (``0.00001`` as ``1e-05``, ``1.0`` as
``1.0``), so a device built on a JCS library (C, JavaScript) failed ``bad_signature`` on
such values; frames signed that older way must still verify while devices are upgraded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import struct

import pytest

from hardware.auth import (
    canonical_json,
    decode_frame,
    jcs_json,
    jcs_number,
    seal,
    verify,
)
from hardware.errors import AuthenticationFailed

KEY = bytes(range(32))
TOPIC = "stores/s1/devices/cart-1/events"
NOW = 1_800_000_000_000
LABEL = b"storefront-device-frame/v1\x00"

# RFC 8785 Appendix B: IEEE-754 binary64 bit patterns and their JCS serialisation.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(bits))[0])


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_numbers_serialise_as_rfc_8785_appendix_b(bits: str, expected: str) -> None:
    value = _double(bits)
    assert jcs_number(value) == expected
    assert jcs_json(value) == expected.encode()
    assert float(expected) == value or value == 0  # -0 reads back as 0


@pytest.mark.parametrize(("value", "expected"), [
    (0.00001, "0.00001"), (1e-7, "1e-7"), (1.0, "1"), (-0.0, "0"), (0.5, "0.5"),
    (1e20, "100000000000000000000"), (1e21, "1e+21"), (123.456, "123.456"),
    (1.5e-7, "1.5e-7"), (2.0**60, "1152921504606847000")])
def test_ecmascript_number_layout(value: float, expected: str) -> None:
    assert jcs_number(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        jcs_number(value)


def test_random_doubles_round_trip_through_their_jcs_text() -> None:
    rng = random.Random(8785)
    for _ in range(20_000):
        value = _double(f"{rng.getrandbits(64):016x}")
        if not math.isfinite(value):
            continue
        text = jcs_number(value)
        assert float(text) == value
        assert float(json.loads(jcs_json({"x": value}))["x"]) == value


def test_objects_sort_by_utf16_code_units_and_strings_escape_as_json_stringify() -> None:
    # U+1F600 (surrogates D83D DE00) sorts before U+FF61 in UTF-16, after it by code point.
    value = {"\uff61": 1, "\U0001f600": 2, "b": [True, None, "\u0007\n\"\\"], "a": 1.0}
    assert jcs_json(value) == ('{"a":1,"b":[true,null,"\\u0007\\n\\"\\\\"],'
                               '"\U0001f600":2,"\uff61":1}').encode()
    assert jcs_json({"ints": [0, -1, 2**62]}) == b'{"ints":[0,-1,4611686018427387904]}'


def _jcs_signed_frame(body_text: str, nonce: str) -> bytes:
    """A frame as a device built on a JCS library sends it: body written in JCS, MAC over
    the JCS of body, nonce, topic and ts (built by hand, not with :func:`seal`)."""
    signed = (f'{{"body":{body_text},"nonce":"{nonce}","topic":"{TOPIC}","ts":{NOW}}}')
    mac = hmac.new(KEY, LABEL + signed.encode(), hashlib.sha256).hexdigest()
    return (f'{{"alg":"HMAC-SHA256","body":{body_text},"mac":"{mac}","nonce":"{nonce}",'
            f'"ts":{NOW},"v":1}}').encode()


@pytest.mark.parametrize("confidence", ["0.00001", "1", "0", "0.5", "1e-7"])
def test_a_frame_signed_by_a_jcs_device_verifies(confidence: str) -> None:
    body = f'{{"confidence":{confidence},"device_id":"cart-1","device_seq":3}}'
    frame = decode_frame(_jcs_signed_frame(body, "ab" * 16), 10_000)
    verify(frame, KEY, TOPIC)


def test_seal_signs_and_writes_jcs() -> None:
    body = {"confidence": 0.00001, "quantity": 1.0}
    raw = seal(KEY, TOPIC, body, ts_ms=NOW, nonce="cd" * 16)
    assert b'"confidence":0.00001' in raw and b'"quantity":1}' in raw
    assert raw == _jcs_signed_frame('{"confidence":0.00001,"quantity":1}', "cd" * 16)


def test_a_frame_signed_the_pre_jcs_way_still_verifies_but_not_with_another_key() -> None:
    body = {"confidence": 1.0, "scale": 0.00001}
    signed = canonical_json({"body": body, "nonce": "ef" * 16, "topic": TOPIC, "ts": NOW})
    assert b"1e-05" in signed and b"1.0" in signed  # the old, non-JCS form
    mac = hmac.new(KEY, LABEL + signed, hashlib.sha256).hexdigest()
    raw = canonical_json({"v": 1, "alg": "HMAC-SHA256", "ts": NOW, "nonce": "ef" * 16,
                          "body": body, "mac": mac})
    verify(decode_frame(raw, 10_000), KEY, TOPIC)
    with pytest.raises(AuthenticationFailed):
        verify(decode_frame(raw, 10_000), bytes(32), TOPIC)


def test_canonical_json_is_unchanged_for_the_audit_hash_chain() -> None:
    """The audit log's stored hashes are over :func:`canonical_json`: it must not change."""
    assert canonical_json({"score": 0.0, "b": 1e-05, "a": [1.0, 2]}) == (
        b'{"a":[1.0,2],"b":1e-05,"score":0.0}')
