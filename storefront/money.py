"""Money helpers: integer minor units in, integer minor units out; never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from storefront.errors import InvalidInput

MINOR_UNITS_PER_MAJOR = 100  # GBP, EUR, ILS: two decimal places (ISO 4217 exponent 2)


def parse_major_to_minor(text: str) -> int:
    """Parse a decimal price in major units (e.g. ``"6.95"``) to minor units (695).

    Raises:
        InvalidInput: not a number, or finer than one minor unit (``"0.001"``),
            which no shelf price can be.
    """
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise InvalidInput(f"price {text!r} is not a decimal number") from exc
    if not value.is_finite():
        raise InvalidInput(f"price {text!r} is not finite")
    minor = value * MINOR_UNITS_PER_MAJOR
    if minor != minor.to_integral_value():
        raise InvalidInput(f"price {text!r} is finer than one minor unit")
    return int(minor)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units for people, e.g. ``format_minor(695, "GBP") -> "6.95 GBP"``."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), MINOR_UNITS_PER_MAJOR)
    return f"{sign}{major}.{minor:02d} {currency}"
