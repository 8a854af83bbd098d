"""Small secrets sealed under the store's key-encryption key (KEK): staff and shopper
TOTP secrets.

A sealed value is ``nonce (12 bytes) || AES-256-GCM(secret) || tag (16 bytes)``
(NIST SP 800-38D, ``cryptography``'s AESGCM) under the current KEK of a
:class:`identity.keyring.ListingKeyProvider`; the associated data is a per-use label
and the owner's id, so a value copied to another row or another kind of account does
not open. Values carry no KEK id: :meth:`SecretSealer.open` tries the current KEK, then
the other KEKs the provider lists (the previous key file while ``storefront keys rotate``
re-seals) and the KEKs this instance saw as current before.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.errors import KeyFileError
from identity.keyring import FixedKeyProvider, ListingKeyProvider
from identity.protection import key_id_for
from storefront.errors import KeyUnavailable


class SealedSecretUnreadable(KeyUnavailable):
    """A sealed value that no KEK this process can read opens: the value was altered,
    belongs to another owner, or was sealed under a KEK that is gone (HTTP 503 unless
    the caller treats it as a failed credential check)."""


class SecretSealer:
    """Seals and opens short text secrets of one kind (``label``) for an owner id.

    ``keys``: one fixed KEK (32 bytes) or a KeyProvider whose current KEK seals new
    values; ``kind`` names the owners in error messages (``"staff"``, ``"shopper"``).
    Raises KeyUnavailable at construction when the current KEK cannot be read.
    """

    def __init__(self, keys: bytes | ListingKeyProvider, *, label: bytes, kind: str) -> None:
        self._keys: ListingKeyProvider = FixedKeyProvider(keys, key_id_for(keys)) \
            if isinstance(keys, bytes) else keys
        self._label = label
        self._kind = kind
        self._seen_kek_ids: list[str] = []  # KEKs seen as current, oldest first
        self.current_kek()

    def current_kek(self) -> tuple[str, bytes]:
        """(id, KEK) of the provider's current KEK, remembered so that values sealed under
        it stay readable after it becomes the previous KEK. Raises KeyUnavailable."""
        try:
            kek_id, kek = self._keys.current()
        except KeyFileError as exc:
            raise KeyUnavailable(f"no current KEK for {self._kind} secrets: {exc}") from None
        if kek_id not in self._seen_kek_ids:
            self._seen_kek_ids.append(kek_id)
        return kek_id, kek

    def seal(self, owner_id: str, secret: str) -> bytes:
        """``secret`` sealed for ``owner_id`` under the current KEK (12 + len + 16 bytes).
        Raises KeyUnavailable when the current KEK cannot be read."""
        nonce = os.urandom(12)
        aead = AESGCM(self.current_kek()[1])
        return nonce + aead.encrypt(nonce, secret.encode(), self._aad(owner_id))

    def open(self, owner_id: str, blob: bytes) -> str:
        """The secret sealed in ``blob`` for ``owner_id``. Raises KeyUnavailable when the
        current KEK cannot be read and :class:`SealedSecretUnreadable` when no readable
        KEK opens ``blob`` (altered, another owner's, or a KEK no longer available)."""
        current_id, current = self.current_kek()
        candidates = [current]
        # the provider's key files name the previous KEK even when this process never
        # saw it as current (two rotations without a sign-in)
        for kek_id in dict.fromkeys([*self._keys.key_ids(), *reversed(self._seen_kek_ids)]):
            if kek_id != current_id:
                try:
                    candidates.append(self._keys.get(kek_id))
                except KeyFileError:
                    continue
        for kek in candidates:
            try:
                return AESGCM(kek).decrypt(blob[:12], blob[12:], self._aad(owner_id)).decode()
            except (InvalidTag, ValueError):
                continue
        raise SealedSecretUnreadable(
            f"the one-time-code secret of {self._kind} {owner_id!r} does not open with the "
            f"server's KEK {current_id!r} (the KEK was rotated: reload the key files or "
            "restart the service)")

    def opens(self, owner_id: str, blob: bytes) -> bool:
        """True when :meth:`open` would succeed with the current KEK alone (a value that
        needs no re-sealing after a rotation)."""
        try:
            AESGCM(self.current_kek()[1]).decrypt(blob[:12], blob[12:], self._aad(owner_id))
            return True
        except (InvalidTag, ValueError):
            return False

    def _aad(self, owner_id: str) -> bytes:
        return self._label + owner_id.encode()
