"""The one composition root: settings -> adapters -> services.

Used by the HTTP app, the CLI, the demo and the tests alike. Nothing is built
at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cart.service import SessionService
from cart.sql_event_store import SqlEventStore
from identity.protection import TemplateCipher, load_or_create_key_file
from identity.service import IdentityService
from identity.settings import IdentitySettings
from storefront.catalog import Catalogue
from storefront.checkout import CheckoutService
from storefront.clock import Clock, utc_now
from storefront.db.engine import make_engine
from storefront.db.migrate import upgrade
from storefront.gates import GateService
from storefront.payments import PaymentProcessor, SimulatedProcessor
from storefront.pricing import tax_policy_from_settings
from storefront.sessions import ItemIngest, SessionReadModel
from storefront.settings import Settings
from storefront.shoppers import ShopperService
from storefront.templates_repo import SqlTemplateRepository


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

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, processor: PaymentProcessor | None = None,
              identity_settings: IdentitySettings | None = None,
              clock: Clock = utc_now, migrate: bool = True) -> Container:
    """Build the services: migrate the database, load the key, rebuild the palm index.

    Raises identity errors when the key file is missing or unsafe outside
    development mode.
    """
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    if migrate:
        upgrade(engine)
    db = sessionmaker(engine, expire_on_commit=False)
    kek, key_id = load_or_create_key_file(settings.resolved_key_file(),
                                          create=settings.environment == "development")
    identity = IdentityService(repository=SqlTemplateRepository(db),
                               cipher=TemplateCipher(kek, key_id),
                               settings=identity_settings or IdentitySettings())
    identity.load()
    processor = processor or SimulatedProcessor(seed=settings.payment_seed,
                                                decline_rate=settings.payment_decline_rate)
    # Many devices append to one session at once: retry version conflicts generously.
    carts = SessionService(SqlEventStore(engine), clock, max_attempts=20)
    catalogue = Catalogue(db)
    read_model = SessionReadModel(db)
    shoppers = ShopperService(sessions=db, identity=identity, clock=clock)
    gates = GateService(identity=identity, carts=carts, read_model=read_model, shoppers=shoppers,
                        store_id=settings.store_id, clock=clock)
    checkout = CheckoutService(sessions=db, carts=carts, catalogue=catalogue, processor=processor,
                               shoppers=shoppers, read_model=read_model,
                               currency=settings.currency,
                               tax=tax_policy_from_settings(settings), clock=clock)
    return Container(settings, engine, db, identity, catalogue, shoppers, carts, read_model,
                     gates, ItemIngest(carts=carts, catalogue=catalogue), checkout, processor)
