"""Per-message authentication of device frames: HMAC-SHA256 over a canonical encoding.

Every message (and every command back) travels in a *signed frame*, a JSON object::

    {"v": 1, "alg": "HMAC-SHA256", "ts": <ms since the Unix epoch, sender's clock>,
     "nonce": <32 hex digits, 16 random bytes>, "body": <the message object>,
     "mac": <64 hex digits>}

``mac`` is HMAC-SHA256 (RFC 2104, FIPS 198-1) with the device's 32-byte key over
``b"storefront-device-frame/v1\\x00"`` followed by the RFC 8785 (JCS) canonical JSON
(:func:`jcs_json`) of ``{"body", "nonce", "topic", "ts"}``. The topic is signed but not
carried: a frame copied onto another device's topic fails to verify. JCS: no whitespace,
UTF-8, object keys sorted by their UTF-16 code units, strings escaped as ECMAScript's
``JSON.stringify`` does, no NaN/Infinity, and numbers written as ECMAScript's
``Number.prototype.toString`` writes them (:func:`jcs_number`: shortest round-trip digits,
plain decimal notation for decimal exponents from -6 to 20, else ``1e+21`` / ``1e-7``
form; ``-0`` as ``0``; ``1.0`` as ``1``), so a device built on any JCS library signs the
same bytes. One deviation: an integer beyond 2**53 (only ``device_seq`` can be one) is
written with all its digits, where a JavaScript signer could not hold it exactly anyway.

Frames signed before this encoding was JCS (floats as Python ``repr``: ``1.0``,
``1e-05``) still verify (:func:`verify` tries that older form when the JCS form does not
match and the two differ), so devices running an older build keep working while the
fleet is upgraded; both forms are MACs with the same key over the same values.

Freshness: a receiver refuses a frame whose ``ts`` lies more than the replay window
from its own clock (:class:`ReplayGuard`), and a nonce seen before inside the window.
A device with a skewed clock is tolerated up to the window; the receiver records the
offset it sees. Effects are made idempotent separately, by ``(device_id, device_seq)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
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
    """Sorted-key, whitespace-free UTF-8 JSON of ``value``, floats as Python ``repr``.

    Not RFC 8785 (see :func:`jcs_json` for that): ``1.0`` stays ``1.0`` and ``0.00001`` is
    ``1e-05``. Its output must never change, because the audit log's stored hash chain
    (:mod:`storefront.security.audit`) is computed over it; device frames are signed over
    :func:`jcs_json` (this form is only accepted from older device builds).
    Raises ``ValueError`` for NaN/Infinity and ``TypeError`` for non-JSON values.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def jcs_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 JSON of ``value`` (dicts, lists, str, int, float,
    bool, None); see the module docstring.

    Raises ``ValueError`` for NaN/Infinity or a string that is not valid Unicode (a lone
    surrogate) and ``TypeError`` for non-JSON values or non-string keys.
    """
    return _jcs(value).encode("utf-8")


def _jcs(value: Any) -> str:
    """The JCS text of one JSON value."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return jcs_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("JSON object keys must be strings")
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(f"{_jcs(k)}:{_jcs(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def jcs_number(value: float) -> str:
    """``value`` as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 3.2.2.3).

    Raises ``ValueError`` for NaN and infinities, which JSON cannot carry.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not valid JSON")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + jcs_number(-value)
    digits, n = _shortest_digits(value)
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exponent = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def _shortest_digits(value: float) -> tuple[str, int]:
    """``(digits, n)`` of a positive finite float: the fewest decimal digits that read back
    as ``value`` (Python's ``repr``, correctly rounded), no leading or trailing zeros, and
    ``n`` such that ``value == 0.digits * 10**n`` (ECMAScript's *s*, *k* and *n*)."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    every = whole + fraction
    significant = every.lstrip("0")
    n = len(whole) + int(exponent or 0) - (len(every) - len(significant))
    return significant.rstrip("0"), n


def _signed_bytes(topic: str, ts: int, nonce: str, body: dict[str, Any]) -> bytes:
    """What a frame's MAC covers after the label: the JCS of body, nonce, topic and ts."""
    return jcs_json({"body": body, "nonce": nonce, "topic": topic, "ts": ts})


def _legacy_signed_bytes(topic: str, ts: int, nonce: str, body: dict[str, Any]) -> bytes:
    """The same fields in the encoding of builds before JCS (floats as Python ``repr``)."""
    return canonical_json({"body": body, "nonce": nonce, "topic": topic, "ts": ts})


def _hmac_hex(key: bytes, signed: bytes) -> str:
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
             "mac": _hmac_hex(key, _signed_bytes(topic, ts_ms, nonce, body))}
    return jcs_json(frame)


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

    The MAC is over the JCS form (:func:`jcs_json`); when that does not match and the
    pre-JCS form (:func:`canonical_json`) of the same fields differs (a float such as
    ``1.0`` or ``1e-05``), a MAC over that form from an older device build is accepted.
    Raises :class:`~hardware.errors.AuthenticationFailed` on a mismatch and
    :class:`~hardware.errors.InvalidMessage` if the body is not canonical-JSON encodable.
    """
    try:
        signed = _signed_bytes(topic, frame.ts, frame.nonce, frame.body)
        legacy = _legacy_signed_bytes(topic, frame.ts, frame.nonce, frame.body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"frame body cannot be encoded canonically: {exc}") from None
    if hmac.compare_digest(_hmac_hex(key, signed), frame.mac):
        return
    if legacy != signed and hmac.compare_digest(_hmac_hex(key, legacy), frame.mac):
        return
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
