"""Receipt rendering (JSON, text, HTML), Accept negotiation and the dispute amendment rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storefront.api.routers.receipts import negotiate
from storefront.disputes import _allocate, _amend
from storefront.errors import InvalidInput
from storefront.pricing import PricedLine, TaxPolicy
from storefront.receipts import (
    PaymentLine,
    ReceiptDocument,
    line_from_dict,
    render_html,
    render_json,
    render_text,
    total_of,
)

POLICY = TaxPolicy(prices_include_tax=True, standard_rate_bp=1800)


def _doc(*names: str, amends: str | None = None) -> ReceiptDocument:
    lines = tuple(PricedLine(f"C{i}", name, 2, 150, 300, payable_minor=300)
                  for i, name in enumerate(names))
    total, taxes = total_of(lines, POLICY)
    return ReceiptDocument("rct_2", "rct_1", amends, None, "ses_1", "shp_1",
                           datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "GBP", lines, taxes, total,
                           True, (PaymentLine("cash", total, total + 100, 100, None),))


def test_html_escapes_names_and_isolates_every_script() -> None:
    page = render_html(_doc("<script>alert('x')</script>", "שוקולד מריר", "\u202etxt.exe"))
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert '<bdi dir="auto">שוקולד מריר</bdi>' in page
    assert "\u202e" not in page  # a bidi override cannot spoof the layout
    assert page.startswith("<!DOCTYPE html>") and 'charset="utf-8"' in page


def test_text_reuses_the_pricing_receipt_with_payments_and_amendment() -> None:
    text = render_text(_doc("Apple", "תפוח", amends="rct_1"))
    assert text.splitlines()[:3] == ["receipt rct_2", "issued 2026-03-02T09:00:00+00:00",
                                     "amends rct_1"]
    assert "AMENDED RECEIPT" in text and "\u2068תפוח\u2069" in text
    assert "paid cash 6.00 GBP (tendered 7.00 GBP, change 1.00 GBP)" in text


def test_json_is_plain_data() -> None:
    body = render_json(_doc("Apple"))
    assert body["kind"] == "original" and body["total_minor"] == 300
    assert body["taxes"][0]["tax_minor"] == 46  # 300 * 18 / 118 = 45.76 -> 46
    assert body["payments"][0]["change_minor"] == 100


@pytest.mark.parametrize(("accept", "expected"), [
    (None, "json"), ("*/*", "json"), ("text/plain", "text"), ("application/json", "json"),
    ("text/html,application/xhtml+xml,*/*;q=0.8", "html"),
    ("text/plain;q=0.5, text/html;q=0.9", "html"), ("image/png", None),
    ("text/html;q=0", None), ("text/html;q=abc, text/plain", "text")])
def test_accept_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_amend_takes_units_out_with_their_share_of_the_saving() -> None:
    line = PricedLine("A", "A", 3, 100, 300, discount_minor=50, payable_minor=250)
    (left,) = _amend((line,), "A", 1)
    assert (left.quantity, left.line_total_minor, left.discount_minor,
            left.payable_minor) == (2, 200, 33, 167)
    assert _amend((line,), "A", 3) == ()
    weighed = PricedLine("W", "W", 1500, 1000, 1500, sold_by_weight=True, payable_minor=1500)
    assert _amend((weighed,), "W", 501)[0].payable_minor == 999  # 0.999 kg x 10.00/kg
    with pytest.raises(InvalidInput, match="only 3"):
        _amend((line,), "A", 4)
    with pytest.raises(InvalidInput, match="not on the receipt"):
        _amend((line,), "B", 1)


def test_refund_goes_to_card_captures_first_never_beyond_them() -> None:
    parts = _allocate(500, [("cap_1", 300), ("cap_2", 0), ("cap_3", 100)])
    assert [(p["capture_id"], p["amount_minor"]) for p in parts] == [("cap_1", 300),
                                                                     ("cap_3", 100)]
    assert _allocate(0, [("cap_1", 300)]) == []


def test_lines_stored_before_promotions_are_read_back() -> None:
    line = line_from_dict({"code": "A", "name": "A", "quantity": 2, "unit_price_minor": 5,
                           "line_total_minor": 10})
    assert line.payable_minor == 10


def test_tax_is_added_when_prices_exclude_it() -> None:
    lines = (PricedLine("A", "A", 1, 1000, 1000, payable_minor=1000),)
    total, taxes = total_of(lines, TaxPolicy(prices_include_tax=False, standard_rate_bp=2000))
    assert (total, taxes[0].tax_minor) == (1200, 200)
