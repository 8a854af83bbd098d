"""Build the account and privacy services around a storefront container."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher

from identity.keyring import ListingKeyProvider
from storefront.accounts import AccountService, LoginPolicy
from storefront.bootstrap import Container
from storefront.clock import Clock, utc_now
from storefront.privacy.archives import ExportPolicy
from storefront.privacy.consent import ConsentService
from storefront.privacy.deletion import DeletionService
from storefront.privacy.enrolment_codes import EnrolmentCodeService
from storefront.privacy.entry_codes import EntryCodeService
from storefront.privacy.export import SYNC_ROW_LIMIT, ExportService
from storefront.privacy.portal import Portal
from storefront.privacy.retention import RetentionService
from storefront.settings import Settings
from storefront.subject_keys import SqlSubjectKeyStore, StoreKeyring


@dataclass
class Privacy:
    """The wired account and privacy services of one process."""

    accounts: AccountService
    consents: ConsentService
    deletion: DeletionService
    exports: ExportService
    portal: Portal
    retention: RetentionService
    entry_codes: EntryCodeService
    enrolment_codes: EnrolmentCodeService


def build_privacy(c: Container, *, clock: Clock = utc_now, hasher: PasswordHasher | None = None,
                  policy: LoginPolicy | None = None,
                  sync_row_limit: int = SYNC_ROW_LIMIT) -> Privacy:
    """The services over ``c``'s database and identity service (``hasher``: argon2 cost)."""
    audit = getattr(c, "audit", None)  # the tamper-evident log, when security is wired
    deletion = DeletionService(sessions=c.db, identity=c.identity, clock=clock, audit=audit)
    exports = ExportService(sessions=c.db, clock=clock, keys=export_keys(c),
                            policy=export_policy(c.settings), sync_row_limit=sync_row_limit,
                            audit=audit)

    def withdraw_palm(shopper_id: str) -> object:
        return deletion.delete_all_palms(shopper_id=shopper_id)

    return Privacy(
        accounts=AccountService(sessions=c.db, shoppers=c.shoppers, clock=clock,
                                keys=kek_provider(c), policy=policy, hasher=hasher),
        consents=ConsentService(sessions=c.db, clock=clock, on_withdraw_palm=withdraw_palm),
        deletion=deletion,
        exports=exports,
        portal=Portal(c.db),
        retention=RetentionService(sessions=c.db, deletion=deletion, clock=clock,
                                   exports=exports),
        entry_codes=EntryCodeService(sessions=c.db, gates=c.gates, clock=clock),
        enrolment_codes=EnrolmentCodeService(sessions=c.db, clock=clock))


def kek_provider(c: Container) -> ListingKeyProvider:
    """The store's KEK provider that bootstrap built (re-reads the key files after
    ``storefront keys rotate``): what seals shopper TOTP secrets and wraps the keys of
    stored export archives. One provider per container, so every service knows the same
    earlier KEKs."""
    return c.security.keys


def export_keys(c: Container) -> StoreKeyring:
    """The store's keyring over its KEK files (re-read after ``storefront keys rotate``) and
    ``subject_keys``; stored export archives use only its ``provider``: each archive's own
    key is wrapped under the current KEK (:mod:`storefront.privacy.archives`)."""
    return StoreKeyring(kek_provider(c), SqlSubjectKeyStore(c.db))


def export_policy(settings: Settings) -> ExportPolicy:
    """Expiry and request limits of stored exports from ``settings``."""
    return ExportPolicy(ttl=timedelta(days=settings.export_ttl_days),
                        max_live=settings.export_max_live,
                        min_interval=timedelta(seconds=settings.export_min_interval_s))
