"""Device HMAC keys at rest: AES-256-GCM (NIST SP 800-38D) under the template KEK.

The gateway must recompute each message's HMAC, so it needs the key itself: a key
cannot be stored as a one-way hash the way a password can. It is sealed instead with
the same key-encryption key as the palm templates (``storefront.settings`` key file),
with the device id, store and KEK id as associated data, so a sealed key copied to
another device row, or read with another KEK, fails to open.

Blob: 12-byte nonce, then the 32-byte key encrypted plus the 16-byte tag.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storefront.errors import InvalidInput

_LABEL = b"storefront/device-key/v1\x00"
_NONCE_BYTES = 12


class DeviceKeyCipher:
    """Seals and opens device keys under one KEK (32 bytes) named ``kek_id``."""

    def __init__(self, kek: bytes, kek_id: str) -> None:
        if len(kek) != 32:
            raise ValueError("the KEK must be 32 bytes")
        self._aead = AESGCM(kek)
        self.kek_id = kek_id

    def _aad(self, store_id: str, device_id: str) -> bytes:
        parts = (self.kek_id, store_id, device_id)
        return _LABEL + b"".join(struct.pack(">H", len(p.encode())) + p.encode() for p in parts)

    def seal(self, store_id: str, device_id: str, key: bytes) -> bytes:
        """Encrypt ``key`` for ``device_id`` of ``store_id``; returns the blob."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, self._aad(store_id, device_id))

    def open(self, store_id: str, device_id: str, blob: bytes) -> bytes:
        """Recover the key; raises InvalidInput if the blob fails authentication."""
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, self._aad(store_id, device_id))
        except (InvalidTag, ValueError):
            raise InvalidInput(f"the key of device {device_id!r} does not open with KEK "
                               f"{self.kek_id!r} (another KEK, or the row was altered)") from None
