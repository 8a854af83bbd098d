"""Plain-text receipts that show product names in any script, right-to-left included.

Each product name is put on a line of its own and wrapped in Unicode bidi
isolation marks, FIRST STRONG ISOLATE (U+2068) ... POP DIRECTIONAL ISOLATE
(U+2069), per the Unicode Bidirectional Algorithm (UAX #9, section 2.7): a
Hebrew or Arabic name is laid out right-to-left inside its isolate and cannot
reorder the quantities and amounts around it. Bidi control characters inside a
name are removed first so a name cannot spoof the layout. Amounts are ASCII.

Control characters never reach the text: the catalogue import and the API refuse
names holding them (see :func:`has_control`), and a name or promotion description
stored before they did has each C0/C1 control character (NUL, ESC, CR, LF, ...) and
line or paragraph separator (U+2028, U+2029) replaced with U+FFFD, the replacement
character, so a terminal or printer gets no escape sequence and a name keeps to its
line.
"""

from __future__ import annotations

import unicodedata

from storefront.money import format_minor
from storefront.pricing.model import GRAMS_PER_KG, PricedCart, PricedLine

FSI = "\u2068"
PDI = "\u2069"
REPLACEMENT = "\ufffd"
_SEPARATORS = frozenset("\u2028\u2029")
_BIDI_CONTROLS: dict[int, str | None] = dict.fromkeys(
    [0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_SHOWN_AS_REPLACEMENT: dict[int, str | None] = dict.fromkeys(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029], REPLACEMENT)


def is_control(char: str) -> bool:
    """True for a C0 or C1 control character (Unicode category Cc: U+0000-U+001F,
    U+007F-U+009F; tab and line feed included) and for U+2028 / U+2029 (line and
    paragraph separators): characters no product name or promotion text may hold."""
    return unicodedata.category(char) == "Cc" or char in _SEPARATORS


def has_control(text: str) -> bool:
    """True when ``text`` holds a character of :func:`is_control`."""
    return any(is_control(char) for char in text)


def isolate(name: str) -> str:
    """``name`` without bidi controls, its control characters (:func:`is_control`) each
    shown as U+FFFD, wrapped in FSI ... PDI."""
    return f"{FSI}{name.translate(_BIDI_CONTROLS).translate(_SHOWN_AS_REPLACEMENT)}{PDI}"


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
