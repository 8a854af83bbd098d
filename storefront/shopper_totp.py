"""Shopper TOTP secrets sealed at rest under the store's KEK, like staff ones.

A shopper's secret is kept only in ``shopper_accounts.totp_secret_sealed``: AES-256-GCM
under the current KEK (:class:`storefront.security.sealing.SecretSealer`, the primitive
that seals staff secrets) with the label ``storefront/shopper-totp/v1`` and the shopper
id as associated data, so a value moved to another row (or a staff row) does not open.
The clear column ``totp_secret`` of rows written before sealing existed is emptied at
start-up by :func:`seal_clear_totp_secrets` (and by the login path on first use, see
:func:`seal_clear_row`); ``storefront keys rotate`` re-seals the values under the new KEK
(:func:`reseal_shopper_totp`).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from identity.keyring import ListingKeyProvider
from storefront.db.models import ShopperAccount
from storefront.security.sealing import SealedSecretUnreadable, SecretSealer

log = logging.getLogger(__name__)
SHOPPER_TOTP_LABEL = b"storefront/shopper-totp/v1\x00"
"""Associated-data label of sealed shopper TOTP secrets (:mod:`storefront.security.sealing`)."""


def shopper_totp_sealer(keys: bytes | ListingKeyProvider) -> SecretSealer:
    """The sealer of shopper TOTP secrets under ``keys`` (a 32-byte KEK or the service's
    key provider). Raises KeyUnavailable when the current KEK cannot be read."""
    return SecretSealer(keys, label=SHOPPER_TOTP_LABEL, kind="shopper")


def seal_clear_row(db: Session, sealer: SecretSealer, shopper_id: str, clear: str) -> bool:
    """In ``db``'s transaction, replace the clear secret ``clear`` of ``shopper_id`` by its
    sealed form and empty ``totp_secret``, only when the row still holds exactly that clear
    secret and no sealed one (compare-and-swap: two processes doing it at once seal it
    once, the other finds nothing to do). True when this call sealed it."""
    done = db.execute(
        sa.update(ShopperAccount)
        .where(ShopperAccount.shopper_id == shopper_id, ShopperAccount.totp_secret == clear,
               ShopperAccount.totp_secret_sealed.is_(None))
        .values(totp_secret_sealed=sealer.seal(shopper_id, clear), totp_secret=None)
        .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0) == 1)


def seal_clear_totp_secrets(sessions: sessionmaker[Session],
                            keys: bytes | ListingKeyProvider) -> int:
    """Seal every shopper TOTP secret still stored in clear (``totp_secret`` set, no
    ``totp_secret_sealed``) and empty the clear column, in one transaction; also empties
    a clear copy left beside a sealed value (the sealed one is the one read). Idempotent;
    returns how many secrets it sealed and logs the counts (never a secret). Raises
    KeyUnavailable when the current KEK cannot be read."""
    sealer = shopper_totp_sealer(keys)
    with sessions.begin() as db:
        rows = db.execute(sa.select(ShopperAccount.shopper_id, ShopperAccount.totp_secret)
                          .where(ShopperAccount.totp_secret.is_not(None),
                                 ShopperAccount.totp_secret_sealed.is_(None))
                          .order_by(ShopperAccount.shopper_id)).all()
        sealed = sum(seal_clear_row(db, sealer, sid, clear) for sid, clear in rows
                     if clear is not None)
        stale = db.execute(sa.update(ShopperAccount)
                           .where(ShopperAccount.totp_secret.is_not(None),
                                  ShopperAccount.totp_secret_sealed.is_not(None))
                           .values(totp_secret=None)
                           .execution_options(synchronize_session=False))
        emptied = int(getattr(stale, "rowcount", 0) or 0)
    if sealed or emptied:
        log.info("sealed %d shopper TOTP secret(s) stored in clear under the KEK; emptied "
                 "%d clear copy(ies) of already sealed secrets", sealed, emptied)
    return sealed


def reseal_shopper_totp(db: sessionmaker[Session], old_kek: bytes, new_kek: bytes) -> int:
    """Re-seal under ``new_kek`` every shopper TOTP secret sealed under ``old_kek`` (one
    compare-and-swap per row; a value the new KEK already opens is left alone, so a second
    run does nothing). A value neither KEK opens (altered: its shopper cannot sign in with
    a code anyway) is left as it is and logged, so it cannot block a rotation. Returns how
    many were re-sealed."""
    old, new = shopper_totp_sealer(old_kek), shopper_totp_sealer(new_kek)
    with db() as s:
        rows = s.execute(sa.select(ShopperAccount.shopper_id, ShopperAccount.totp_secret_sealed)
                         .where(ShopperAccount.totp_secret_sealed.is_not(None))).all()
    count = 0
    for shopper_id, blob in rows:
        if blob is None or new.opens(shopper_id, blob):
            continue
        try:
            sealed = new.seal(shopper_id, old.open(shopper_id, blob))
        except SealedSecretUnreadable:
            log.warning("shopper %s: the sealed TOTP secret opens with neither KEK; left "
                        "as it is (its codes are refused until TOTP is set up again)",
                        shopper_id)
            continue
        with db.begin() as s:
            result = s.execute(sa.update(ShopperAccount).where(
                ShopperAccount.shopper_id == shopper_id,
                ShopperAccount.totp_secret_sealed == blob).values(totp_secret_sealed=sealed))
            count += int(getattr(result, "rowcount", 0) or 0)
    return count
