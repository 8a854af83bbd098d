"""The one composition root: settings -> adapters -> services.

Used by the HTTP app, the CLI, the demo and the tests alike. Nothing is built
at import time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.service import SessionService
from cart.sql_event_store import SqlEventStore
from identity.revocable import KeyFileTransform
from identity.service import IdentityService
from identity.settings import IdentitySettings
from storefront.catalog import Catalogue
from storefront.checkout import CheckoutService
from storefront.clock import Clock, utc_now
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.disputes import REFUND_CLAIM_TIMEOUT, DisputeService
from storefront.entry_lock import EntryLocks
from storefront.exit_payment import ExitPayment
from storefront.gates import EntryPolicy, GateService
from storefront.payments import PaymentProcessor, RetryPolicy
from storefront.payments.factory import build_processor
from storefront.payments.reconcile import reconcile
from storefront.pricing import tax_policy_from_settings
from storefront.receipts import ReceiptStore
from storefront.security.audit import Audit
from storefront.security.service import Security, build_security
from storefront.sessions import ItemIngest, SessionReadModel, SessionScope
from storefront.settings import Settings
from storefront.shopper_totp import seal_clear_totp_secrets
from storefront.shoppers import ShopperService
from storefront.staffed import StaffedCheckout
from storefront.subject_keys import (
    KekFiles,
    ReloadingKeyProvider,
    SqlSubjectKeyStore,
    StoreKeyring,
)
from storefront.templates_repo import SqlTemplateRepository
from storefront.till import Till


@dataclass
class Container:
    """Every service of one storefront process, wired."""

    settings: Settings
    engine: sa.Engine
    db: sessionmaker[Session]
    identity: IdentityService
    catalogue: Catalogue
    shoppers: ShopperService
    carts: SessionService
    read_model: SessionReadModel
    gates: GateService
    ingest: ItemIngest
    checkout: CheckoutService
    processor: PaymentProcessor
    till: Till
    staffed: StaffedCheckout
    receipts: ReceiptStore
    disputes: DisputeService
    audit: Audit
    security: Security

    def close(self) -> None:
        """Save the encrypted palm-index snapshot (best effort) and release connections."""
        with contextlib.suppress(OSError):  # the next start rebuilds from the database
            self.identity.save_snapshot()
        self.gates.close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, processor: PaymentProcessor | None = None,
              identity_settings: IdentitySettings | None = None,
              clock: Clock = utc_now, migrate: bool = True,
              reconcile_payments: bool = True) -> Container:
    """Build the services: migrate the database, load the key, seal shopper TOTP secrets
    still stored in clear (:func:`storefront.shopper_totp.seal_clear_totp_secrets`),
    rebuild the palm index, reconcile payment calls left in flight (``reconcile_payments``).

    Raises identity errors when a key file (the KEK, the revocable-transform key) is
    missing or unsafe outside development mode; a key file that is there but unusable
    is refused before the state folder, the database or anything else is made or opened
    (:func:`check_present_key_files`).
    """
    settings = settings or Settings()
    check_present_key_files(settings)  # a bad key file: refused with nothing changed
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    if migrate:
        upgrade(engine)
    db = sessionmaker(engine, expire_on_commit=False)
    provider = ReloadingKeyProvider(KekFiles(settings.resolved_key_file()),
                                    development=settings.environment == "development")
    seal_clear_totp_secrets(db, provider)  # shopper secrets stored in clear before 0013
    transform = KeyFileTransform(revocable_key_path(settings),  # followed across rotations
                                 development=settings.environment == "development")
    identity = IdentityService(repository=SqlTemplateRepository(db),  # a data key per person
                               cipher=StoreKeyring(provider, SqlSubjectKeyStore(db)),
                               settings=identity_settings or IdentitySettings(),
                               snapshot_path=palm_index_snapshot_path(settings),
                               transform=transform)
    identity.load()
    processor = processor or build_processor(settings)
    payment = ExitPayment(sessions=db, processor=processor, clock=clock,
                          retry=RetryPolicy(attempts=settings.payment_retry_attempts))
    # Many devices append to one session at once: retry version conflicts generously.
    # Events below min_event_confidence are flagged, and a flagged cart goes to staff.
    carts = SessionService(SqlEventStore(engine), clock, max_attempts=20,
                           min_confidence=settings.min_event_confidence)
    catalogue = Catalogue(db)
    read_model = SessionReadModel(db, store_id=settings.store_id)
    audit = Audit(db, clock)
    shoppers = ShopperService(sessions=db, identity=identity, clock=clock, audit=audit)
    gates = GateService(identity=identity, carts=carts, read_model=read_model, shoppers=shoppers,
                        store_id=settings.store_id, clock=clock, payment=payment,
                        policy=EntryPolicy(hold_minor=settings.entry_hold_minor,
                                           currency=settings.currency,
                                           unpaid_grace=timedelta(seconds=settings.unpaid_grace_s),
                                           same_entry=timedelta(seconds=settings.same_entry_s)),
                        audit=audit, entry_locks=EntryLocks(engine))
    scope = SessionScope(read_model)
    checkout = CheckoutService(sessions=db, carts=carts, catalogue=catalogue, processor=processor,
                               shoppers=shoppers, read_model=read_model,
                               currency=settings.currency,
                               tax=tax_policy_from_settings(settings), clock=clock,
                               payment=payment,
                               exit_lease=timedelta(seconds=settings.exit_lease_s),
                               max_charge_minor=settings.max_exit_charge_minor,
                               scope=scope)
    gates.on_missed_exit(lambda session_id, reason: checkout.exit(session_id,
                                                                  missed_exit=reason))
    staff = _staff_services(db, carts, catalogue, read_model, shoppers, processor, settings,
                            clock, audit)
    if reconcile_payments:  # settle calls (exits and staffed card tenders) a crash left
        alone = settings.payment_reconcile_after_s == 0  # the only process: leases are dead
        reconcile(payment=payment, read_model=read_model, clock=clock,
                  older_than=timedelta(seconds=settings.payment_reconcile_after_s),
                  lease=timedelta(seconds=settings.exit_lease_s), till=staff["till"],
                  take_over_leases=alone)
    return Container(settings, engine, db, identity, catalogue, shoppers, carts, read_model,
                     gates, ItemIngest(carts=carts, catalogue=catalogue, scope=scope),
                     checkout, processor,
                     **staff,
                     audit=audit, security=build_security(db, keys=provider,
                                                          store_id=settings.store_id,
                                                          audit=audit, clock=clock))


def key_file_checks(settings: Settings) -> list[tuple[str, Path, Callable[[], object]]]:
    """The key files start-up reads, each as (its setting, its path, a check reading it as
    :func:`bootstrap` does): the key-encryption key (``STOREFRONT_KEY_FILE``, with its
    ``.previous`` file during a rotation) and the revocable-transform key
    (``STOREFRONT_REVOCABLE_KEY_FILE``). A check raises KeyFileError (missing outside
    development, not a regular file, readable by others, not 32 bytes, outside
    development a placeholder key) or OSError (it cannot be read or made); in
    development it creates its missing file, as start-up does."""
    development = settings.environment == "development"
    kek, revocable = KekFiles(settings.resolved_key_file()), revocable_key_path(settings)
    return [("STOREFRONT_KEY_FILE", kek.current,
             lambda: ReloadingKeyProvider(kek, development=development).current()),
            ("STOREFRONT_REVOCABLE_KEY_FILE", revocable,
             lambda: KeyFileTransform(revocable, development=development))]


def check_present_key_files(settings: Settings, *, revocable: bool = True) -> None:
    """Run the :func:`key_file_checks` that create nothing, before anything else is opened:
    outside development all of them (a missing file is refused), in development those
    whose file is there (something at the path: a file, a folder, a link), since start-up
    creates a missing one later. A key file that is empty, truncated, of the wrong length,
    not a regular file, readable by others or unreadable thus stops a command or start-up
    before the state folder, the database and its ``-wal``/``-shm`` files are touched.

    ``revocable``: False for a command that reads only the key-encryption key.

    Raises KeyFileError or OSError, as the same check would later in start-up."""
    development = settings.environment == "development"
    for setting, path, check in key_file_checks(settings):
        if setting == "STOREFRONT_REVOCABLE_KEY_FILE" and not revocable:
            continue
        if not development or os.path.lexists(path):
            check()


def revocable_key_path(settings: Settings) -> Path:
    """The revocable-transform key file: ``revocable_key_file`` or
    ``<data_dir>/keys/revocable.key`` (next to the KEK's default)."""
    return settings.revocable_key_file or settings.data_dir / "keys" / "revocable.key"


def palm_index_snapshot_path(settings: Settings) -> Path:
    """Where the encrypted palm-index snapshot lives: ``<data_dir>/index/palm-index.snapshot``."""
    return settings.data_dir / "index" / "palm-index.snapshot"


def _staff_services(db: sessionmaker[Session], carts: SessionService, catalogue: Catalogue,
                    read_model: SessionReadModel, shoppers: ShopperService,
                    processor: PaymentProcessor, settings: Settings,
                    clock: Clock, audit: Audit) -> dict[str, Any]:
    """The staffed checkout, till, receipts and disputes (Container fields by name)."""
    tax = tax_policy_from_settings(settings)
    till = Till(sessions=db, processor=processor, currency=settings.currency, clock=clock,
                retry=RetryPolicy(attempts=settings.payment_retry_attempts), audit=audit)
    receipts = ReceiptStore(sessions=db, tax=tax)
    staffed = StaffedCheckout(sessions=db, carts=carts, catalogue=catalogue,
                              read_model=read_model, shoppers=shoppers, till=till,
                              currency=settings.currency, tax=tax, clock=clock, audit=audit)
    # A refund claimed longer ago than a payment call can last is taken over (its request
    # died mid-call); 0 (one process, reconcile at start-up) keeps the disputes' default.
    claim = settings.payment_reconcile_after_s or REFUND_CLAIM_TIMEOUT.total_seconds()
    disputes = DisputeService(sessions=db, processor=processor, receipts=receipts, clock=clock,
                              audit=audit, claim_timeout=timedelta(seconds=claim))
    return {"till": till, "staffed": staffed, "receipts": receipts, "disputes": disputes}
