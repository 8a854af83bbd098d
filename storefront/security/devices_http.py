"""HMAC-signed HTTP requests from gates and carts.

A device signs each request with its 32-byte key from the device registry
(:mod:`storefront.devices.registry`), sending four headers:

* ``X-Device-Id``: the registered device id;
* ``X-Device-Timestamp``: milliseconds since the Unix epoch, device clock;
* ``X-Device-Nonce``: 32 lowercase hex digits (16 random bytes), never reused;
* ``X-Device-Signature``: 64 hex digits, HMAC-SHA256 (RFC 2104) over
  ``b"storefront-device-http/v1\\x00"`` and the canonical JSON
  (:func:`hardware.auth.canonical_json`) of ``{"body_sha256", "device", "method",
  "nonce", "path", "query", "ts"}``: the upper-case method, the URL path, the raw
  query string, and the SHA-256 hex of the exact body bytes.

The label differs from the MQTT frame label, so a signed frame cannot be replayed as
an HTTP request. The server refuses a timestamp more than the window from its clock
and a nonce already seen (table ``device_nonces``, kept for twice the window), a
revoked or unknown device, a device of another store, and a wrong signature. The
HTTP analogue of the frame format in :mod:`hardware.auth` (same canonical signing).

A verified request also records the device's ``last_seen_at`` and ``clock_offset_ms``
(as the MQTT gateway does), in the nonce's transaction and at most once per
:data:`LAST_SEEN_EVERY` (60 s) per device and process, so ``storefront devices list``
shows HTTP devices as seen without a database write per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardware.auth import canonical_json
from storefront.clock import Clock
from storefront.db.models import DeviceNonce
from storefront.devices.models import Device
from storefront.devices.registry import DeviceRegistry, RegisteredDevice
from storefront.errors import StorefrontError
from storefront.security.errors import AuthenticationRequired

LABEL: Final = b"storefront-device-http/v1\x00"
H_ID, H_TS, H_NONCE, H_SIG = ("x-device-id", "x-device-timestamp", "x-device-nonce",
                              "x-device-signature")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
_TS = re.compile(r"^[0-9]{1,16}$")


@dataclass(frozen=True)
class DevicePrincipal:
    """An authenticated device: id, kind (gate, cart, ...) and store."""

    id: str
    kind: str
    store_id: str


def signature(key: bytes, *, device_id: str, method: str, path: str, query: str,
              body: bytes, ts_ms: int, nonce: str) -> str:
    """The HMAC-SHA256 hex signature of one request (see the module docstring)."""
    signed = canonical_json({"body_sha256": hashlib.sha256(body).hexdigest(),
                             "device": device_id, "method": method.upper(), "nonce": nonce,
                             "path": path, "query": query, "ts": ts_ms})
    return hmac.new(key, LABEL + signed, hashlib.sha256).hexdigest()


def sign_headers(key: bytes, *, device_id: str, method: str, path: str, query: str,
                 body: bytes, ts_ms: int, nonce: str | None = None) -> dict[str, str]:
    """The four headers a device sends with a request (a fresh random nonce by default)."""
    nonce = nonce or os.urandom(16).hex()
    return {H_ID: device_id, H_TS: str(ts_ms), H_NONCE: nonce,
            H_SIG: signature(key, device_id=device_id, method=method, path=path, query=query,
                             body=body, ts_ms=ts_ms, nonce=nonce)}


class DeviceRequestVerifier:
    """Checks signed device requests against the registry; remembers nonces in the database.

    ``window_s``: largest accepted clock distance, seconds.
    """

    def __init__(self, *, registry: DeviceRegistry, sessions: sessionmaker[Session],
                 clock: Clock, store_id: str, window_s: int) -> None:
        self._registry = registry
        self._db = sessions
        self._clock = clock
        self._store_id = store_id
        self._window = timedelta(seconds=window_s)
        self._pruned_at: datetime | None = None
        self._seen_at: dict[str, datetime] = {}  # last ``last_seen_at`` written, per device

    def verify(self, *, method: str, path: str, query: str, body: bytes,
               headers: Mapping[str, str]) -> DevicePrincipal:
        """The device that signed this request, or AuthenticationRequired with the reason
        (missing headers, unknown or revoked device, stale timestamp, replayed nonce,
        wrong signature). The nonce is spent only by a request that verifies."""
        device, ts, nonce, sig, offset_ms = self._admit(headers)

        def matches(key: bytes) -> bool:
            expected = signature(key, device_id=device.id, method=method, path=path,
                                 query=query, body=body, ts_ms=ts, nonce=nonce)
            return hmac.compare_digest(expected, sig)

        if not matches(device.key):  # a key rotated since it was cached?
            fresh = self._registry.rotated(device)
            if fresh is None or not matches(fresh.key):
                raise AuthenticationRequired("device signature does not match")
            device = fresh
        self._spend(device.id, nonce, offset_ms)
        return DevicePrincipal(device.id, device.kind, device.store_id)

    def precheck(self, headers: Mapping[str, str]) -> None:
        """The checks that need no body (header syntax, a registered device of this store
        that is not revoked, a fresh timestamp), so a request that fails them is refused
        before its body is read. Raises AuthenticationRequired with the reason."""
        self._admit(headers)

    def _admit(self, headers: Mapping[str, str]
               ) -> tuple[RegisteredDevice, int, str, str, int]:
        """(device, timestamp ms, nonce, signature, clock offset ms) of valid headers."""
        device_id, ts, nonce, sig = (headers.get(h, "") for h in (H_ID, H_TS, H_NONCE, H_SIG))
        if not (device_id and _TS.fullmatch(ts) and _NONCE.fullmatch(nonce)
                and _SIG.fullmatch(sig)):
            raise AuthenticationRequired("device requests must be signed: X-Device-Id, "
                                         "X-Device-Timestamp, X-Device-Nonce and "
                                         "X-Device-Signature")
        device = self._registry.lookup(device_id) if len(device_id) <= 64 else None
        if device is None or device.revoked or device.store_id != self._store_id:
            raise AuthenticationRequired("unknown or revoked device")
        now = self._clock()
        offset_ms = int(ts) - int(now.timestamp() * 1000)
        if abs(offset_ms) > self._window.total_seconds() * 1000:
            raise AuthenticationRequired(f"request timestamp is {offset_ms / 1000:+.0f} s from "
                                         f"the server clock (stale or skewed)")
        return device, int(ts), nonce, sig, offset_ms

    def _spend(self, device_id: str, nonce: str, offset_ms: int) -> None:
        """Record the nonce (the primary key refuses a replay); one transaction, which also
        deletes expired nonces at most once per ``PRUNE_EVERY`` (they only take room:
        a random nonce is never sent again by an honest device) and updates the device's
        last-seen time and clock offset at most once per ``LAST_SEEN_EVERY``."""
        now = self._clock()
        prune = self._pruned_at is None or not (
            self._pruned_at <= now < self._pruned_at + PRUNE_EVERY)
        seen_at = self._seen_at.get(device_id)
        seen = seen_at is None or not (seen_at <= now < seen_at + LAST_SEEN_EVERY)
        try:
            with self._db.begin() as db:
                conn = db.connection()
                if prune:
                    conn.execute(_PRUNE, {"now": now})
                conn.execute(_INSERT_NONCE, {"device_id": device_id, "nonce": nonce,
                                             "expires_at": now + 2 * self._window})
                if seen:
                    conn.execute(_SEEN, {"device_id": device_id, "now": now,
                                         "offset_ms": offset_ms})
        except IntegrityError:
            raise AuthenticationRequired("replayed request: nonce already used") from None
        if prune:
            self._pruned_at = now
        if seen:
            self._seen_at[device_id] = now


PRUNE_EVERY: Final = timedelta(seconds=1)
_NONCES = cast(sa.Table, DeviceNonce.__table__)
_PRUNE = sa.delete(_NONCES).where(
    _NONCES.c.expires_at < sa.bindparam("now", type_=_NONCES.c.expires_at.type))
_INSERT_NONCE = sa.insert(_NONCES)
LAST_SEEN_EVERY: Final = timedelta(seconds=60)
_DEVICES = cast(sa.Table, Device.__table__)
_SEEN_AT = sa.bindparam("now", type_=_DEVICES.c.last_seen_at.type)
_SEEN = sa.update(_DEVICES).where(
    _DEVICES.c.id == sa.bindparam("device_id"),
    # another process (or the MQTT gateway) may have written a later time meanwhile
    sa.or_(_DEVICES.c.last_seen_at.is_(None), _DEVICES.c.last_seen_at < _SEEN_AT),
).values(last_seen_at=_SEEN_AT, clock_offset_ms=sa.bindparam("offset_ms"))


MAX_SIGNED_BODY: Final = 32 * 1024 * 1024


class SignedBodyMiddleware:
    """Buffers the body of requests carrying ``X-Device-Signature`` (at most 32 MiB,
    else 413) into ``scope["state"]["signed_body"]`` and replays it to the app, so the
    signature is checked over the exact bytes the route then parses.

    Before reading the body it runs :meth:`DeviceRequestVerifier.precheck` (when the
    app's container is built): a request whose headers are malformed, name no registered
    device of this store, or carry a stale timestamp is answered 401 without buffering
    anything, so an unauthenticated client cannot make the server hold its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(k.lower() == H_SIG.encode()
                                              for k, _ in scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        refusal = _precheck(scope)
        if refusal is not None:
            await _unauthenticated(send, refusal)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_SIGNED_BODY:
                await _too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        scope.setdefault("state", {})["signed_body"] = body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _precheck(scope: Scope) -> str | None:
    """The reason a signed request's headers fail :meth:`DeviceRequestVerifier.precheck`,
    or None (passed, or no container to check with yet)."""
    container = getattr(getattr(scope.get("app"), "state", None), "container", None)
    verifier = getattr(getattr(container, "security", None), "devices", None)
    if not isinstance(verifier, DeviceRequestVerifier):
        return None
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    try:
        verifier.precheck(headers)  # ASGI names are lower case, as H_ID ... are
    except AuthenticationRequired as exc:
        return exc.reason
    except StorefrontError:  # a server-side fault (e.g. KeyUnavailable): the route's
        return None  # own check raises it again and answers it (503)
    return None


async def _unauthenticated(send: Send, reason: str) -> None:
    body = json.dumps({"error": "unauthenticated", "reason": reason}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="storefront"')]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body",
                "body": b'{"error":"too_large","reason":"signed body over 32 MiB"}'})
