"""Money helpers: integer minor units in, integer minor units out; never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

from storefront.errors import InvalidInput

MINOR_UNITS_PER_MAJOR = 100  # GBP, EUR, ILS: two decimal places (ISO 4217 exponent 2)


def parse_major_to_minor(text: str) -> int:
    """Parse a decimal price in major units (e.g. ``"6.95"``, ``"1e2"``) to minor units.

    Exact (no rounding at any length). ASCII digits only: no digit-group separators
    (``"1,50"``, ``"1_000"``) and no other scripts' digits.

    Raises:
        InvalidInput: not a number, longer than ``MAX_PRICE_TEXT`` characters, not finite,
            above ``MAX_MAJOR_UNITS`` in size, or finer than one minor unit (``"0.001"``),
            which no shelf price can be.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"price {text!r} is not a decimal number")
    t = text.strip()
    if len(t) > MAX_PRICE_TEXT:
        raise InvalidInput(f"price {t[:20]!r}... is longer than {MAX_PRICE_TEXT} characters")
    if not t.isascii() or "_" in t:
        raise InvalidInput(f"price {text!r} is not a plain decimal number")
    try:
        value = Decimal(t)
    except InvalidOperation as exc:
        raise InvalidInput(f"price {text!r} is not a decimal number") from exc
    if not value.is_finite():
        raise InvalidInput(f"price {text!r} is not finite")
    if value.copy_abs() > MAX_MAJOR_UNITS:  # copy_abs: no context, no overflow
        raise InvalidInput(f"price {text!r} is above {MAX_MAJOR_UNITS} in size")
    if value and value.adjusted() < -2:  # below one hundredth: never a whole minor unit
        raise InvalidInput(f"price {text!r} is finer than one minor unit")
    with localcontext() as ctx:  # exact: enough digits for any accepted text
        ctx.prec = 4 * MAX_PRICE_TEXT
        minor = value * MINOR_UNITS_PER_MAJOR
        if minor != minor.to_integral_value():
            raise InvalidInput(f"price {text!r} is finer than one minor unit")
    return int(minor)


MAX_PRICE_TEXT = 64
"""The longest price text read (characters, after stripping blanks)."""
MAX_MAJOR_UNITS = 10**12
"""The largest price magnitude parsed (major units); the catalogue's own bound is lower
(``storefront.catalog.MAX_PRICE_MINOR``)."""


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units for people, e.g. ``format_minor(695, "GBP") -> "6.95 GBP"``."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), MINOR_UNITS_PER_MAJOR)
    return f"{sign}{major}.{minor:02d} {currency}"
