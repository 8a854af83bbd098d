"""The security services of one process, wired (built by :func:`storefront.bootstrap`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from identity.keyring import ListingKeyProvider
from storefront.clock import Clock, utc_now
from storefront.devices.keys import DeviceKeyring
from storefront.devices.registry import DeviceRegistry
from storefront.security.audit import Audit
from storefront.security.devices_http import DeviceRequestVerifier
from storefront.security.settings import SecuritySettings
from storefront.security.staff import StaffService
from storefront.security.staff_admin import StaffAdmin


@dataclass
class Security:
    """Staff accounts (sign-in and tokens; changes to accounts), the device registry and
    request verifier, the audit log, limits."""

    settings: SecuritySettings
    staff: StaffService
    registry: DeviceRegistry
    devices: DeviceRequestVerifier
    audit: Audit
    staff_admin: StaffAdmin
    keys: ListingKeyProvider
    """The store's KEK provider that seals device keys and TOTP secrets (the one the
    service was built with; the privacy services seal and wrap under it too)."""


def build_security(db: sessionmaker[Session], *, keys: ListingKeyProvider, store_id: str,
                   audit: Audit, settings: SecuritySettings | None = None,
                   clock: Clock = utc_now) -> Security:
    """Wire the services; device request times are checked against ``clock``.

    ``keys`` seals and opens device keys and staff TOTP secrets; the service's
    :class:`storefront.subject_keys.ReloadingKeyProvider` re-reads the key files, so
    ``storefront keys rotate`` needs no restart for them.
    """
    settings = settings or SecuritySettings()
    registry = DeviceRegistry(db, DeviceKeyring(keys), clock)
    verifier = DeviceRequestVerifier(registry=registry, sessions=db, clock=clock,
                                     store_id=store_id, window_s=settings.device_window_s)
    staff = StaffService(db, keys, clock, token_ttl_s=settings.token_ttl_s)
    return Security(settings, staff, registry, verifier, audit,
                    StaffAdmin(db, staff, audit, clock), keys)
