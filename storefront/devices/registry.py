"""The device registry (table ``devices``): who may talk to the gateway, with which key."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from hardware.auth import new_device_key
from storefront.clock import Clock
from storefront.devices.keys import DeviceKeyring
from storefront.devices.models import Device
from storefront.errors import Conflict, InvalidInput, NotFound

DeviceKind = Literal["gate", "cart", "plate", "scanner"]
DEVICE_KINDS: tuple[str, ...] = get_args(DeviceKind)
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class RegisteredDevice:
    """A device as the gateway needs it: store, kind, key (32 bytes) and revocation."""

    id: str
    store_id: str
    kind: str
    key: bytes
    revoked: bool


@dataclass(frozen=True)
class DeviceView:
    """A device as listed (no key)."""

    id: str
    store_id: str
    kind: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    clock_offset_ms: int | None


class DeviceRegistry:
    """Adds, lists and looks up devices; keys sealed with ``keys`` (each row opened with
    the KEK it names, so a running process follows ``storefront keys rotate``).

    Lookups are cached for ``cache_ttl_s`` seconds, so a revocation or a new key
    (:meth:`rotate_key`) takes effect within that time in a running gateway.
    """

    def __init__(self, sessions: sessionmaker[Session], keys: DeviceKeyring, clock: Clock,
                 cache_ttl_s: float = 30.0) -> None:
        self._sessions = sessions
        self._keys = keys
        self._clock = clock
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, RegisteredDevice]] = {}

    def add(self, *, store_id: str, device_id: str, kind: str) -> bytes:
        """Register a device; returns its new 32-byte key (shown once, stored sealed).

        Raises InvalidInput for a bad id or kind and Conflict if the id is taken.
        """
        for what, value in (("store id", store_id), ("device id", device_id)):
            if not _ID.fullmatch(value):
                raise InvalidInput(f"{what} {value[:80]!r} is not 1-64 characters of "
                                   "[A-Za-z0-9._-]")
        if kind not in DEVICE_KINDS:
            raise InvalidInput(f"device kind {kind!r} is not one of {', '.join(DEVICE_KINDS)}")
        key = new_device_key()
        sealed, kek_id = self._keys.seal(store_id, device_id, key)
        with self._sessions.begin() as db:
            if db.get(Device, device_id) is not None:
                raise Conflict(f"device {device_id!r} is already registered")
            db.add(Device(id=device_id, store_id=store_id, kind=kind, key_ciphertext=sealed,
                          kek_id=kek_id, created_at=self._clock()))
        return key

    def rotate_key(self, *, store_id: str, device_id: str, reinstate: bool = False) -> bytes:
        """Give a device of ``store_id`` a new random key; returns it (shown once, stored
        sealed under the current KEK like :meth:`add`'s). The old key is refused from then
        on (in other processes after their cache TTL). A revoked device keeps its
        revocation unless ``reinstate``, which lifts it (a recovered or replaced device).

        Raises NotFound for a device not registered in ``store_id`` and Conflict for a
        revoked one without ``reinstate``.
        """
        key = new_device_key()
        sealed, kek_id = self._keys.seal(store_id, device_id, key)
        with self._sessions.begin() as db:
            row = db.get(Device, device_id, with_for_update=True)
            if row is None or row.store_id != store_id:
                raise NotFound(f"device {device_id[:80]!r} is not registered in store "
                               f"{store_id}")
            if row.revoked_at is not None and not reinstate:
                raise Conflict(f"device {device_id!r} is revoked: add --reinstate to give "
                               "it a new key and accept it again")
            row.key_ciphertext, row.kek_id = sealed, kek_id
            if reinstate:
                row.revoked_at = None
        self._cache.pop(device_id, None)
        return key

    def revoke(self, device_id: str) -> None:
        """Refuse the device's messages from now on (after the cache TTL in other processes)."""
        with self._sessions.begin() as db:
            db.execute(sa.update(Device).where(Device.id == device_id)
                       .values(revoked_at=self._clock()))
        self._cache.pop(device_id, None)

    def lookup(self, device_id: str) -> RegisteredDevice | None:
        """The device with its key, or None when unknown. Raises KeyUnavailable when the
        sealed key does not open with the KEKs this process can read."""
        cached = self._cache.get(device_id)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        with self._sessions() as db:
            row = db.get(Device, device_id)
            if row is None:
                return None
            device = RegisteredDevice(row.id, row.store_id, row.kind,
                                      self._keys.open(row.store_id, row.id, row.kek_id,
                                                      row.key_ciphertext),
                                      row.revoked_at is not None)
        self._cache[device_id] = (time.monotonic(), device)
        return device

    def rotated(self, device: RegisteredDevice, *,
                min_age_s: float = 1.0) -> RegisteredDevice | None:
        """The device as stored now when its key differs from ``device``'s (rotated by
        another process) and it is still registered, not revoked, in the same store;
        else None. Callers whose signature failed against the cached key check it once
        against this one, so a rotated key works at once. The database is read only when
        the cached entry is at least ``min_age_s`` old: a stream of bad signatures costs
        at most one read a second per device."""
        cached = self._cache.get(device.id)
        if cached is not None and time.monotonic() - cached[0] < min_age_s:
            fresh: RegisteredDevice | None = cached[1]
        else:
            self._cache.pop(device.id, None)
            fresh = self.lookup(device.id)
        if (fresh is None or fresh.revoked or fresh.store_id != device.store_id
                or fresh.key == device.key):
            return None
        return fresh

    def list(self, store_id: str | None = None) -> list[DeviceView]:
        """Every device (of ``store_id`` when given), by id."""
        query = sa.select(Device).order_by(Device.id)
        if store_id is not None:
            query = query.where(Device.store_id == store_id)
        with self._sessions() as db:
            return [DeviceView(r.id, r.store_id, r.kind, r.created_at, r.revoked_at,
                               r.last_seen_at, r.clock_offset_ms) for r in db.scalars(query)]

    def record_clocks(self, seen: dict[str, tuple[datetime, int]]) -> None:
        """Store each device's last-seen time and clock offset (ms), ``{id: (at, offset)}``."""
        if not seen:
            return
        with self._sessions.begin() as db:
            for device_id, (at, offset) in seen.items():
                db.execute(sa.update(Device).where(Device.id == device_id)
                           .values(last_seen_at=at, clock_offset_ms=offset))
