"""Storefront configuration: one pydantic-settings class, built at start-up.

Every field can be set with an environment variable prefixed ``STOREFRONT_``
(for example ``STOREFRONT_DATABASE_URL``) or in a ``.env`` file.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cart.session import MAX_CLOCK_SKEW
from storefront.payments.retry import RetryPolicy, longest_call_s

# The service's own folder comes from this variable, not STOREFRONT_DATA_DIR: that one names
# the research data sets tests and benchmarks read, where nothing may be written.
STATE_DIR_ENV = "STOREFRONT_STATE_DIR"
# HTTP requests one Stripe adapter method makes at most: capture and void read the intent
# before acting on it, and a look-up may search and then list (stripe_adapter.py).
STRIPE_REQUESTS_PER_CALL = 2


class Settings(BaseSettings):
    """Settings of the storefront service, CLI and demo.

    Attributes:
        environment: ``development`` creates a key file on first run;
            ``production`` refuses to start without one.
        data_dir: folder for the SQLite file and the key files (created on first run);
            environment variable ``STOREFRONT_STATE_DIR``.
        database_url: SQLAlchemy URL; default is a SQLite file under ``data_dir``.
            PostgreSQL: ``postgresql+psycopg://user@host:5432/db``.
        key_file: template key-encryption key (32 random bytes, mode 0600).
        revocable_key_file: key of the revocable transform of palm-index codes (32
            random bytes, mode 0600; default ``<data_dir>/keys/revocable.key``; same
            rules as ``key_file``); replaced by ``storefront identity rotate-transform``.
        store_id: the store this process serves.
        currency: ISO 4217 code of all prices (minor units everywhere).
        prices_include_tax: shelf prices include tax (True, as in Israel and the UK) or
            tax is added at the till (False).
        vat_rate_percent: rate of the ``standard`` tax category, percent with at most
            two decimals (default 18: Israel's VAT since 2025-01-01).
        payment_decline_rate: share of authorizations the simulated processor declines.
        payment_seed: seed of the simulated processor's decisions.
        payment_processor: ``simulated`` or ``stripe``.
        payment_sim_state: SQLite file of the simulated processor's state (None: memory),
            so that it outlives a restart of this process as a real processor would.
        payment_fault_rate: share of simulated processor calls that fail (declines,
            timeouts before and after the call took effect, HTTP 5xx).
        payment_sim_latency_ms: simulated network time per processor call, ms.
        payment_timeout_s: timeout of one processor HTTP call, seconds.
        payment_retry_attempts: calls per operation at most (tenacity, same key).
        payment_reconcile_after_s: an in-flight processor call older than this
            (seconds) is presumed orphaned and looked up by ``reconcile``. Must exceed
            :meth:`longest_payment_call_s`, or be 0: "one service process; whatever is
            in flight at its start-up was left by a dead process", which is true only
            when no other process (API worker, ``storefront payments reconcile``) runs
            payment calls on the same database.
        stripe_api_key, stripe_api_base: the Stripe account (``sk_test_...``) and
            API URL (default Stripe's; a ``localstripe`` URL in tests).
        entry_hold_minor: hold placed at the entry gate, minor units; 0 places no
            hold and authorizes the total at exit instead.
        max_exit_charge_minor: the largest total charged at the exit without a person,
            minor units (default 100,000: 1,000.00 in the store's currency); a larger
            cart goes to the staffed checkout (a sensor error or a bulk purchase that
            staff should see). The staffed checkout itself takes up to 10^9 per tender.
        unpaid_grace_s: a staffed-checkout session unsettled for longer than this
            (seconds) refuses the shopper's next entry.
        stuck_exit_after_s, stuck_exit_interval_s: an exit left ``exited`` (a crash
            mid-exit, a processor that could not answer) for longer than
            ``stuck_exit_after_s`` with no live exit lease is run again by the server
            (:mod:`storefront.payments.stuck_exits`): at start-up and every
            ``stuck_exit_interval_s`` seconds in ``storefront serve`` (0: only at
            start-up and by ``storefront payments reconcile``).
        same_entry_s: a shopper entering again within this many seconds of an entry
            whose session has recorded nothing yet (a double scan, or two gates at
            once) is answered with that session instead of a second one; 0 turns
            this off (every entry then sends a session left open to review).
        exit_lease_s: an exit claim older than this (seconds) is presumed dead; must
            exceed :meth:`longest_payment_call_s` (one call; an exit makes several calls
            under one lease, and an exit that takes over a lease while a call is still in
            flight is refused by the payment journal, not charged twice).
        device_max_future_skew_s: how far ahead of the server clock a device's own time
            may be, seconds (``device_time`` and the signed frame's time over MQTT,
            ``sensor_time`` over HTTP); a message beyond it is refused
            ``device_time_in_future`` (HTTP 422) and nothing of it is stored. Late (past)
            times are not bounded by it. Default and ceiling: the cart's own bound
            (:data:`cart.session.MAX_CLOCK_SKEW`, 300 s), which refuses item events
            further ahead in any case.
        host, port: where ``storefront serve`` listens.
        export_ttl_days: a shopper's stored data-export archive is deleted this many days
            after it was built (default 7); downloading it later answers 410.
        export_max_live: live (pending, running or ready) data exports one shopper may
            hold (default 3); export_min_interval_s: seconds between two export requests
            of one shopper (default 60). Beyond either: 429 with ``Retry-After``.
        retention_sweep_interval_s: ``storefront serve`` applies the shoppers' retention
            periods (:meth:`storefront.privacy.retention.RetentionService.sweep`) this
            often, seconds (default 3600; 0: never, leave it to ``storefront privacy
            sweep`` from cron); retention_sweep_first_delay_s: the first run, this long
            after start-up (default 60).
    """

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".storefront",
                           validation_alias=STATE_DIR_ENV)
    database_url: str | None = None
    key_file: Path | None = None
    revocable_key_file: Path | None = None
    store_id: str = "store-1"
    currency: str = "GBP"
    prices_include_tax: bool = True
    vat_rate_percent: Decimal = Field(default=Decimal("18"), ge=0, le=100, decimal_places=2)
    payment_decline_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    payment_seed: int = 7
    payment_processor: Literal["simulated", "stripe"] = "simulated"
    payment_sim_state: Path | None = None
    payment_fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    payment_sim_latency_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    payment_timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    payment_retry_attempts: int = Field(default=4, ge=1, le=10)
    # Defaults exceed the longest call with Stripe at the default timeout and attempts
    # (7 methods x 2 requests x 10 s + 0.35 s of waits = 140.35 s; the simulated processor
    # without latency: 0.35 s), so that either processor starts with the defaults.
    payment_reconcile_after_s: float = Field(default=300.0, ge=0.0)
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    entry_hold_minor: int = Field(default=0, ge=0, le=10_000_000)
    max_exit_charge_minor: int = Field(default=100_000, ge=1, le=10**12)
    unpaid_grace_s: float = Field(default=900.0, ge=0.0)
    same_entry_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    stuck_exit_after_s: float = Field(default=60.0, ge=0.0, le=86_400.0)
    stuck_exit_interval_s: float = Field(default=60.0, ge=0.0, le=86_400.0)
    exit_lease_s: float = Field(default=150.0, gt=0.0, le=3600.0)
    min_event_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    device_max_future_skew_s: float = Field(default=MAX_CLOCK_SKEW.total_seconds(), ge=0.0,
                                            le=MAX_CLOCK_SKEW.total_seconds())
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    export_ttl_days: int = Field(default=7, ge=1, le=90)
    export_max_live: int = Field(default=3, ge=1, le=100)
    export_min_interval_s: float = Field(default=60.0, ge=0.0, le=86_400.0)
    retention_sweep_interval_s: float = Field(default=3600.0, ge=0.0, le=7 * 86_400.0)
    retention_sweep_first_delay_s: float = Field(default=60.0, ge=0.0, le=86_400.0)

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha():
            raise ValueError("currency must be a 3-letter ISO 4217 code")
        return value.upper()

    @model_validator(mode="after")
    def _payment_windows_outlast_a_call(self) -> Settings:
        """Refuse an exit lease or reconciliation grace that a processor call can outlast:
        another exit would take over the lease, or reconciliation look up a call that is
        still running. Raises ValueError naming the settings."""
        longest = self.longest_payment_call_s()
        limits = [("exit_lease_s", self.exit_lease_s)]
        if self.payment_reconcile_after_s != 0:  # 0: single process (see the docstring)
            limits.append(("payment_reconcile_after_s", self.payment_reconcile_after_s))
        for name, value in limits:
            if value <= longest:
                raise ValueError(
                    f"{name}={value:g} s must exceed the longest a payment call can take, "
                    f"{longest:g} s with payment_processor={self.payment_processor}, "
                    f"payment_retry_attempts={self.payment_retry_attempts}, "
                    f"payment_timeout_s={self.payment_timeout_s:g}, "
                    f"payment_sim_latency_ms={self.payment_sim_latency_ms:g}, "
                    f"payment_fault_rate={self.payment_fault_rate:g}: raise {name} (env "
                    f"STOREFRONT_{name.upper()}) or lower the retries or the timeout"
                    + ("" if name == "exit_lease_s" else
                       " (or set it to 0 for a single service process)"))
        return self

    def longest_payment_call_s(self) -> float:
        """Upper bound (seconds) on how long one journaled processor call stays in flight:
        :func:`storefront.payments.retry.longest_call_s` with this service's retry policy
        (``bootstrap``: ``RetryPolicy(attempts=payment_retry_attempts)``). Per request:
        ``payment_timeout_s`` for Stripe (``STRIPE_REQUESTS_PER_CALL`` requests per
        method); ``payment_sim_latency_ms`` for the simulated processor, whose timeouts
        are injected at once and which fails transiently only when ``payment_fault_rate``
        > 0 (else no retries). Database waits of the journal's own writes are not counted."""
        policy = RetryPolicy(attempts=self.payment_retry_attempts)
        if self.payment_processor == "stripe":
            return longest_call_s(policy, request_s=self.payment_timeout_s,
                                  requests_per_call=STRIPE_REQUESTS_PER_CALL)
        return longest_call_s(policy, request_s=self.payment_sim_latency_ms / 1000.0,
                              transient_failures=self.payment_fault_rate > 0)

    def __init__(self, **values: Any) -> None:
        """Settings from ``values``, the environment and ``.env``; ``data_dir`` may be
        given by its name (it is read from ``STOREFRONT_STATE_DIR`` in the environment)."""
        if "data_dir" in values:
            values[STATE_DIR_ENV] = values.pop("data_dir")
        super().__init__(**values)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/storefront.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'storefront.db').resolve()}"

    def resolved_key_file(self) -> Path:
        """The key-encryption key file, defaulting to ``<data_dir>/keys/kek.key``."""
        return self.key_file or self.data_dir / "keys" / "kek.key"
