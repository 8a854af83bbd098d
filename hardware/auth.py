"""Per-message authentication of device frames: HMAC-SHA256 over a canonical encoding.

Every message (and every command back) travels in a *signed frame*, a JSON object::

    {"v": 1, "alg": "HMAC-SHA256", "ts": <ms since the Unix epoch, sender's clock>,
     "nonce": <32 hex digits, 16 random bytes>, "body": <the message object>,
     "mac": <64 hex digits>}

``mac`` is HMAC-SHA256 (RFC 2104, FIPS 198-1) with the device's 32-byte key over
``b"storefront-device-frame/v1\\x00"`` followed by the canonical JSON of
``{"body", "nonce", "topic", "ts"}``. The topic is signed but not carried: a frame
copied onto another device's topic fails to verify. Canonical JSON is the RFC 8785
(JCS) subset our messages need: keys sorted, no whitespace, UTF-8, no NaN/Infinity;
floats written as their shortest round-trip form (Python ``repr``).

Freshness: a receiver refuses a frame whose ``ts`` lies more than the replay window
from its own clock (:class:`ReplayGuard`), and a nonce seen before inside the window.
A device with a skewed clock is tolerated up to the window; the receiver records the
offset it sees. Effects are made idempotent separately, by ``(device_id, device_seq)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from hardware.errors import AuthenticationFailed, InvalidMessage, ReplayedMessage, StaleMessage

FRAME_VERSION: Final = 1
ALGORITHM: Final = "HMAC-SHA256"
KEY_BYTES: Final = 32
_LABEL: Final = b"storefront-device-frame/v1\x00"
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_MAC = re.compile(r"^[0-9a-f]{64}$")
_FRAME_KEYS: Final = frozenset({"v", "alg", "ts", "nonce", "body", "mac"})


def new_device_key() -> bytes:
    """A fresh random 32-byte device key (``os.urandom``)."""
    return os.urandom(KEY_BYTES)


def canonical_json(value: Any) -> bytes:
    """Canonical UTF-8 JSON bytes of ``value`` (sorted keys, no whitespace, no NaN).

    Raises ``ValueError`` for NaN/Infinity and ``TypeError`` for non-JSON values.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _mac(key: bytes, topic: str, ts: int, nonce: str, body: dict[str, Any]) -> str:
    signed = canonical_json({"body": body, "nonce": nonce, "topic": topic, "ts": ts})
    return hmac.new(key, _LABEL + signed, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Frame:
    """A decoded (not yet verified) signed frame. ``ts`` is milliseconds since the epoch."""

    ts: int
    nonce: str
    body: dict[str, Any]
    mac: str


def seal(key: bytes, topic: str, body: dict[str, Any], *, ts_ms: int,
         nonce: str | None = None) -> bytes:
    """Sign ``body`` (a JSON object) for ``topic`` at sender time ``ts_ms``; returns frame bytes.

    Raises ``ValueError`` if the key is not 32 bytes or the nonce is not 32 hex digits.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"device keys are {KEY_BYTES} bytes, got {len(key)}")
    nonce = nonce if nonce is not None else os.urandom(16).hex()
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 32 lowercase hex digits")
    frame = {"v": FRAME_VERSION, "alg": ALGORITHM, "ts": ts_ms, "nonce": nonce, "body": body,
             "mac": _mac(key, topic, ts_ms, nonce, body)}
    return canonical_json(frame)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_frame(raw: bytes, max_bytes: int) -> Frame:
    """Parse frame bytes without verifying them.

    Raises :class:`~hardware.errors.InvalidMessage` if ``raw`` is over ``max_bytes``,
    not UTF-8 JSON (NaN, too deeply nested), not an object with exactly the frame
    keys, or a field has the wrong type or form.
    """
    if len(raw) > max_bytes:
        raise InvalidMessage(f"frame is {len(raw)} bytes, over the {max_bytes} limit")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"frame is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict) or set(data) != _FRAME_KEYS:
        raise InvalidMessage(f"frame must be an object with exactly {sorted(_FRAME_KEYS)}")
    ts, nonce, body, mac = data["ts"], data["nonce"], data["body"], data["mac"]
    if data["v"] != FRAME_VERSION or isinstance(data["v"], bool):
        raise InvalidMessage(f"unsupported frame version {data['v']!r}")
    if data["alg"] != ALGORITHM:
        raise InvalidMessage(f"unsupported algorithm {data['alg']!r}")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 2**53:
        raise InvalidMessage("frame ts must be an integer of milliseconds since the epoch")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise InvalidMessage("frame nonce must be 32 lowercase hex digits")
    if not isinstance(mac, str) or not _MAC.fullmatch(mac):
        raise InvalidMessage("frame mac must be 64 lowercase hex digits")
    if not isinstance(body, dict):
        raise InvalidMessage("frame body must be a JSON object")
    return Frame(ts, nonce, body, mac)


def verify(frame: Frame, key: bytes, topic: str) -> None:
    """Check ``frame``'s HMAC for ``topic`` with ``key`` (constant-time comparison).

    Raises :class:`~hardware.errors.AuthenticationFailed` on a mismatch and
    :class:`~hardware.errors.InvalidMessage` if the body is not canonical-JSON encodable.
    """
    try:
        expected = _mac(key, topic, frame.ts, frame.nonce, frame.body)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"frame body cannot be encoded canonically: {exc}") from None
    if not hmac.compare_digest(expected, frame.mac):
        raise AuthenticationFailed("HMAC does not match the device key for this topic")


class ReplayGuard:
    """Refuses frames outside the replay window and nonces seen inside it (in memory).

    ``window_ms``: largest accepted distance between a frame's ``ts`` and the
    receiver's clock, milliseconds. At most ``max_nonces`` nonces are kept (oldest
    dropped first); a process restart forgets them, which is safe because effects
    are idempotent by ``(device_id, device_seq)`` and old frames fail the window.
    """

    def __init__(self, window_ms: int, max_nonces: int = 1_000_000) -> None:
        if window_ms <= 0 or max_nonces <= 0:
            raise ValueError("window_ms and max_nonces must be positive")
        self._window = window_ms
        self._max = max_nonces
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()

    def check(self, device_id: str, frame: Frame, now_ms: int) -> int:
        """Accept the frame once; returns its clock offset ``ts - now`` in milliseconds.

        Raises :class:`~hardware.errors.StaleMessage` outside the window and
        :class:`~hardware.errors.ReplayedMessage` for a nonce already seen.
        """
        offset = frame.ts - now_ms
        if abs(offset) > self._window:
            raise StaleMessage(f"frame time is {offset / 1000:+.1f} s from the receiver's clock "
                               f"(window {self._window / 1000:.0f} s)")
        self._expire(now_ms)
        key = (device_id, frame.nonce)
        if key in self._seen:
            raise ReplayedMessage("nonce already seen inside the replay window")
        self._seen[key] = now_ms
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return offset

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - 2 * self._window
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= horizon:
                break
            self._seen.popitem(last=False)
