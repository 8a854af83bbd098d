"""Build the configured payment processor from settings (used by ``bootstrap``)."""

from __future__ import annotations

from storefront.payments.base import PaymentProcessor
from storefront.payments.simulated import FaultPlan, SimulatedProcessor
from storefront.settings import Settings


def build_processor(settings: Settings) -> PaymentProcessor:
    """The simulated processor (seeded, optional faults and durable state) or Stripe.

    Raises ValueError when ``payment_processor`` is ``stripe`` without an API key.
    """
    if settings.payment_processor == "stripe":
        from storefront.payments.stripe_adapter import StripeProcessor

        if settings.stripe_api_key is None:
            raise ValueError("STOREFRONT_STRIPE_API_KEY is required for the Stripe processor")
        return StripeProcessor(api_key=settings.stripe_api_key.get_secret_value(),
                               api_base=settings.stripe_api_base,
                               timeout_s=settings.payment_timeout_s)
    if settings.payment_sim_state is not None:
        settings.payment_sim_state.parent.mkdir(parents=True, exist_ok=True)
    return SimulatedProcessor(seed=settings.payment_seed,
                              decline_rate=settings.payment_decline_rate,
                              faults=FaultPlan(rate=settings.payment_fault_rate),
                              state_path=settings.payment_sim_state,
                              latency_ms=settings.payment_sim_latency_ms)
