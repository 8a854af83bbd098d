"""Plain-text receipts that show product names in any script, right-to-left included.

Each product name is put on a line of its own and wrapped in Unicode bidi
isolation marks, FIRST STRONG ISOLATE (U+2068) ... POP DIRECTIONAL ISOLATE
(U+2069), per the Unicode Bidirectional Algorithm (UAX #9, section 2.7): a
Hebrew or Arabic name is laid out right-to-left inside its isolate and cannot
reorder the quantities and amounts around it. Bidi control characters inside a
name are removed first so a name cannot spoof the layout. Amounts are ASCII.
"""

from __future__ import annotations

import unicodedata

from storefront.money import format_minor
from storefront.pricing.model import GRAMS_PER_KG, PricedCart, PricedLine

FSI = "\u2068"
PDI = "\u2069"
_BIDI_CONTROLS = dict.fromkeys(
    [0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def isolate(name: str) -> str:
    """``name`` without bidi controls, wrapped in FSI ... PDI."""
    return f"{FSI}{name.translate(_BIDI_CONTROLS)}{PDI}"


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide (CJK) characters 2, combining marks and controls 0."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Cf", "Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def render_receipt_text(priced: PricedCart, *, width: int = 42, title: str = "RECEIPT") -> str:
    """The receipt as plain text, ``width`` columns, lines ending in ``\\n``.

    Per product: the isolated name, then quantity (units, or kg for weighed
    goods) x unit price and the line amount; promotion savings; tax per
    category; the total.
    """
    out = [title.center(width), "-" * width]
    for line in priced.lines:
        out.append(isolate(line.name))
        out.append(_row(f"  {_quantity(line, priced.currency)}",
                        format_minor(line.line_total_minor, priced.currency), width))
        if line.discount_minor:
            out.append(_row("  promotion", format_minor(-line.discount_minor, priced.currency),
                            width))
    out.append("-" * width)
    for promo in priced.promotions:
        out.append(isolate(promo.description or promo.promotion_id))
        out.append(_row("  saving", format_minor(-promo.saving_minor, priced.currency), width))
    for tax in priced.taxes:
        label = f"tax {tax.category} {tax.rate_bp // 100}.{tax.rate_bp % 100:02d}%"
        label += " incl." if priced.prices_include_tax else ""
        out.append(_row(label, format_minor(tax.tax_minor, priced.currency), width))
    out.append(_row("TOTAL", format_minor(priced.total_minor, priced.currency), width))
    return "\n".join(out) + "\n"


def _quantity(line: PricedLine, currency: str) -> str:
    price = format_minor(line.unit_price_minor, currency)
    if line.sold_by_weight:
        kilos, grams = divmod(line.quantity, GRAMS_PER_KG)
        return f"{kilos}.{grams:03d} kg x {price}/kg"
    return f"{line.quantity} x {price}"


def _row(left: str, right: str, width: int) -> str:
    gap = max(1, width - display_width(left) - display_width(right))
    return f"{left}{' ' * gap}{right}"
