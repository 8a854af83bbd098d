"""Plain-text receipts: names in any script survive, isolated from the amounts."""

import unicodedata
from datetime import date

from storefront.catalog import make_item
from storefront.pricing import Promotion, PromotionKind, price_lines, render_receipt_text
from storefront.pricing.receipt_text import FSI, PDI, display_width, isolate

NAMES = ["חלב תנובה 3% 1 ליטר", "خبز عربي", "牛奶 1L", "Café crème", "שָׁלוֹם 500 גרם"]


def _names_in(text: str) -> list[str]:
    return [line[1:-1] for line in text.splitlines() if line.startswith(FSI)]


def test_names_in_any_script_round_trip_through_the_receipt() -> None:
    items = {f"C{i}": make_item(f"C{i}", name, 100 + i, "ILS") for i, name in enumerate(NAMES)}
    text = render_receipt_text(price_lines(dict.fromkeys(items, 1), items, "ILS",
                                           on=date(2026, 8, 10)))
    assert _names_in(text) == NAMES
    assert text.endswith("TOTAL" + " " * 29 + "5.10 ILS\n")  # 42 columns; 1.00 + ... + 1.04


def test_amount_rows_hold_no_right_to_left_text_and_align() -> None:
    items = {"H": make_item("H", "גבינה צהובה", 5990, "ILS", sold_by_weight=True)}
    promo = Promotion("p", PromotionKind.PERCENT_OFF, frozenset({"H"}), "20% הנחה",
                      rate_bp=2000)
    text = render_receipt_text(price_lines({"H": 250}, items, "ILS", promotions=[promo],
                                           on=date(2026, 8, 10)), width=40)
    lines = text.splitlines()
    assert "  0.250 kg x 59.90 ILS/kg" in text and _names_in(text) == ["גבינה צהובה", "20% הנחה"]
    for line in lines:
        if not line.startswith(FSI):
            assert not any("\u0590" <= char <= "\u05ff" for char in line)
            assert display_width(line) <= 40


def test_bidi_controls_in_names_cannot_escape_the_isolate() -> None:
    assert isolate("abc\u202e\u2069def") == f"{FSI}abcdef{PDI}"
    assert display_width("牛奶") == 4 and display_width(isolate("שָׁ")) == 1


def test_control_characters_never_reach_the_text() -> None:
    # Rows stored before the import and the API refused control characters.
    nasty = "red\x1b[31mRED\x1b[0m\x00\r\n\x85\x9b2J\u2028\u2029\x7f\t"
    assert isolate(nasty) == f"{FSI}red\ufffd[31mRED\ufffd[0m" + "\ufffd" * 5 + "2J" \
        + "\ufffd" * 4 + PDI
    items = {"E": make_item("E", f"esc {nasty}", 100, "ILS")}
    promo = Promotion("p", PromotionKind.PERCENT_OFF, frozenset({"E"}), "off\x1b]0;x\x07",
                      rate_bp=1000)
    text = render_receipt_text(price_lines({"E": 1}, items, "ILS", promotions=[promo],
                                           on=date(2026, 8, 10)))
    lines = text.split("\n")
    assert lines[-1] == ""
    for line in lines:
        assert not any(unicodedata.category(char) == "Cc" or char in "\u2028\u2029"
                       for char in line), repr(line)
    assert _names_in(text) == [isolate(f"esc {nasty}")[1:-1], "off\ufffd]0;x\ufffd"]
