"""Build the account and privacy services around a storefront container."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from storefront.accounts import AccountService, LoginPolicy
from storefront.bootstrap import Container
from storefront.clock import Clock, utc_now
from storefront.privacy.consent import ConsentService
from storefront.privacy.deletion import DeletionService
from storefront.privacy.entry_codes import EntryCodeService
from storefront.privacy.export import SYNC_ROW_LIMIT, ExportService
from storefront.privacy.portal import Portal
from storefront.privacy.retention import RetentionService


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


def build_privacy(c: Container, *, clock: Clock = utc_now, hasher: PasswordHasher | None = None,
                  policy: LoginPolicy | None = None,
                  sync_row_limit: int = SYNC_ROW_LIMIT) -> Privacy:
    """The services over ``c``'s database and identity service (``hasher``: argon2 cost)."""
    audit = getattr(c, "audit", None)  # the tamper-evident log, when security is wired
    deletion = DeletionService(sessions=c.db, identity=c.identity, clock=clock, audit=audit)

    def withdraw_palm(shopper_id: str) -> object:
        return deletion.delete_all_palms(shopper_id=shopper_id)

    return Privacy(
        accounts=AccountService(sessions=c.db, shoppers=c.shoppers, clock=clock, policy=policy,
                                hasher=hasher),
        consents=ConsentService(sessions=c.db, clock=clock, on_withdraw_palm=withdraw_palm),
        deletion=deletion,
        exports=ExportService(sessions=c.db, clock=clock, sync_row_limit=sync_row_limit,
                              audit=audit),
        portal=Portal(c.db),
        retention=RetentionService(sessions=c.db, deletion=deletion, clock=clock),
        entry_codes=EntryCodeService(sessions=c.db, gates=c.gates, clock=clock))
