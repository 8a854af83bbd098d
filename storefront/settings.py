"""Storefront configuration: one pydantic-settings class, built at start-up.

Every field can be set with an environment variable prefixed ``STOREFRONT_``
(for example ``STOREFRONT_DATABASE_URL``) or in a ``.env`` file.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of the storefront service, CLI and demo.

    Attributes:
        environment: ``development`` creates a key file on first run;
            ``production`` refuses to start without one.
        data_dir: folder for the SQLite file and the key file (created on first run).
        database_url: SQLAlchemy URL; default is a SQLite file under ``data_dir``.
            PostgreSQL: ``postgresql+psycopg://user@host:5432/db``.
        key_file: template key-encryption key (32 random bytes, mode 0600).
        store_id: the store this process serves.
        currency: ISO 4217 code of all prices (minor units everywhere).
        prices_include_tax: shelf prices include tax (True, as in Israel and the UK) or
            tax is added at the till (False).
        vat_rate_percent: rate of the ``standard`` tax category, percent with at most
            two decimals (default 18: Israel's VAT since 2025-01-01).
        payment_decline_rate: share of authorizations the simulated processor declines.
        payment_seed: seed of the simulated processor's decisions.
        host, port: where ``storefront serve`` listens.
    """

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".storefront")
    database_url: str | None = None
    key_file: Path | None = None
    store_id: str = "store-1"
    currency: str = "GBP"
    prices_include_tax: bool = True
    vat_rate_percent: Decimal = Field(default=Decimal("18"), ge=0, le=100, decimal_places=2)
    payment_decline_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    payment_seed: int = 7
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError("currency must be a 3-letter ISO 4217 code")
        return value.upper()

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/storefront.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'storefront.db').resolve()}"

    def resolved_key_file(self) -> Path:
        """The key-encryption key file, defaulting to ``<data_dir>/keys/kek.key``."""
        return self.key_file or self.data_dir / "keys" / "kek.key"
