"""Security configuration: one pydantic-settings class, built at start-up.

Every field can be set with an environment variable prefixed ``STOREFRONT_SECURITY_``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecuritySettings(BaseSettings):
    """Settings of staff authentication, device request signatures and role limits.

    Attributes:
        token_ttl_s: lifetime of a staff bearer token, seconds (default 8 h: one shift).
        device_window_s: largest accepted distance between a signed device request's
            timestamp and the server clock, seconds; nonces are kept twice as long.
        cashier_refund_limit_minor, manager_refund_limit_minor: largest refund one
            dispute may pay out, per role, minor units.
        cashier_correction_limit: the most items a cashier may change by corrections
            on one session (units added or removed, summed over its corrections; setting
            the weight of a line sold by weight counts as one item); managers have no
            limit.
        shopper_dispute_limit_minor: largest refund a shopper may claim themselves by
            disputing one receipt line in the portal, minor units; above it the
            shopper is asked to go to the store's staffed checkout.
        hsts_max_age_s: ``Strict-Transport-Security`` max-age sent on HTTPS responses.
    """

    model_config = SettingsConfigDict(env_prefix="STOREFRONT_SECURITY_", env_file=".env",
                                      extra="ignore")

    token_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    device_window_s: int = Field(default=120, ge=5, le=3600)
    cashier_refund_limit_minor: int = Field(default=2000, ge=0)
    manager_refund_limit_minor: int = Field(default=100_000, ge=0)
    cashier_correction_limit: int = Field(default=20, ge=0)
    shopper_dispute_limit_minor: int = Field(default=2000, ge=0)
    hsts_max_age_s: int = Field(default=31_536_000, ge=0)
