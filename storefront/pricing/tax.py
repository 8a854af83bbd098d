"""Tax of a receipt: once per tax category over the receipt, rounded half up.

Rule: the payable amounts of all lines of one category are summed first and
the tax of that sum is rounded once, half up to the minor unit. Rounding per
line instead would let n lines drift up to n/2 minor units from the true tax;
rounding per receipt and rate is what the EU VAT Directive (2006/112/EC, art.
226(9)-(10)) and Israeli invoice practice show on an invoice: one taxable
amount and one tax amount per rate.

- Prices include tax: ``tax = round_half_up(gross * r / (1 + r))``, the shopper
  pays ``gross`` (the shelf prices), ``net = gross - tax``.
- Prices exclude tax: ``tax = round_half_up(net * r)``, the shopper pays
  ``net + tax``.
"""

from __future__ import annotations

from collections.abc import Iterable

from storefront.pricing.model import FULL_RATE_BP, TaxLine, TaxPolicy
from storefront.pricing.rounding import round_half_up


def receipt_taxes(amounts: Iterable[tuple[str, int]], policy: TaxPolicy) -> tuple[TaxLine, ...]:
    """Tax lines, sorted by category, for (tax category, payable minor units) pairs.

    Payable amounts are shelf amounts after promotions: gross when the policy's
    prices include tax, net otherwise.

    Raises:
        InvalidInput: a category the policy does not know.
    """
    sums: dict[str, int] = {}
    for category, amount in amounts:
        sums[category] = sums.get(category, 0) + amount
    lines = []
    for category in sorted(sums):
        rate = policy.rate_bp(category)
        amount = sums[category]
        if policy.prices_include_tax:
            tax = round_half_up(amount * rate, FULL_RATE_BP + rate)
            lines.append(TaxLine(category, rate, amount - tax, tax, amount))
        else:
            tax = round_half_up(amount * rate, FULL_RATE_BP)
            lines.append(TaxLine(category, rate, amount, tax, amount + tax))
    return tuple(lines)
