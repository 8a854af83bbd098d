"""The staff console's main task in a real browser: a cashier settles a session that
the exit sent to the staffed checkout (an age-restricted product; the issuer refuses
the card on file too): claim, correct a line, confirm the age check, take cash, close,
and read the receipt, whose Hebrew product name is shown right to left."""

from __future__ import annotations

import pytest
from a11y import focus_order, problems
from browser_pages import console_errors, control, screenshot, staff_sign_in_by_keyboard, zoomed
from browser_store import HEBREW_MILK, TILL, LiveStore, Staff
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

BASKET = {"MILK-3": 2, "WATER": 1, "WINE-75": 1}
TOTAL_AFTER_CORRECTION = 2 * 695 + 2 * 95 + 899  # two waters instead of one: 24.79 GBP
HANDED_OVER = "50.00"


def test_cashier_settles_a_staffed_session(page: Page, browser: Browser, base_url: str,
                                           live_store: LiveStore, cashier: Staff) -> None:
    session_id = live_store.staffed_session(BASKET)
    staff_sign_in_by_keyboard(page, base_url, cashier)

    page.goto(f"{base_url}/console/checkout")
    expect(page.get_by_role("heading", level=1)).to_have_text("Staffed checkout")
    assert problems(page) == []
    screenshot(page, "console-01-queue")
    page.get_by_role("link", name=f"Open {session_id}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(session_id)
    screenshot(page, "console-02-session")

    control(page, "Claim session").click()
    expect(control(page, "Release claim")).to_be_visible()
    screenshot(page, "console-03-claimed")
    check_session_page_is_usable(page, browser)

    correct_water(page)
    assert live_store.staffed_cart(session_id)["total_minor"] == TOTAL_AFTER_CORRECTION

    age_check = control(page, "Confirm age checked")
    if age_check.count():
        age_check.click()
        expect(control(page, "Confirm age checked")).to_have_count(0)
        screenshot(page, "console-05-age-checked")

    take_cash(page)
    cart = live_store.staffed_cart(session_id)
    assert cart["balance_due_minor"] == 0 and cart["can_close"], cart
    assert [(t["kind"], t["amount_minor"], t["change_minor"]) for t in cart["tenders"]] == [
        ("cash", TOTAL_AFTER_CORRECTION, 5000 - TOTAL_AFTER_CORRECTION)]

    control(page, "Close sale").click()
    check_receipt(page)
    assert live_store.api.get(f"/sessions/{session_id}").json()["status"] == "settled"
    assert console_errors(page) == []


def correct_line_form(page: Page) -> None:
    """Fill and send the correction form: one more bottle of water than the cart saw."""
    product = page.get_by_label("Product", exact=True)
    options = product.evaluate("el => Array.from(el.options).map(o => o.value)")
    assert "WATER" in options, options
    product.select_option(value="WATER")
    page.get_by_label("New quantity").fill("2")
    page.get_by_label("Reason").fill("Shopper showed two bottles at the till")
    control(page, "Correct line").click()


def correct_water(page: Page) -> None:
    """Correct the water line and check the page shows the audited correction."""
    correct_line_form(page)
    corrections = page.get_by_role("table", name="Corrections")
    expect(corrections).to_contain_text("Shopper showed two bottles at the till")
    expect(corrections.get_by_role("row").nth(1)).to_contain_text("WATER")
    screenshot(page, "console-04-corrected")


def take_cash(page: Page) -> None:
    """Take a cash tender larger than the balance (change is computed)."""
    page.get_by_role("group", name="Tender").get_by_role("radio", name="Cash").check()
    page.get_by_label("Amount", exact=True).fill(HANDED_OVER)
    page.get_by_label("Till", exact=True).fill(TILL)
    control(page, "Take tender").click()
    expect(page.get_by_role("table", name="Tenders")).to_contain_text("25.21")
    screenshot(page, "console-06-paid")


def check_receipt(page: Page) -> None:
    """The receipt page: heading, total, change, and the Hebrew name right to left."""
    expect(page.get_by_role("heading", name="Receipt", level=1)).to_be_visible()
    expect(page.get_by_text("Total 24.79 GBP", exact=True)).to_be_visible()
    main = page.get_by_role("main")
    expect(main).to_contain_text("50.00 GBP")  # handed over
    expect(main).to_contain_text("25.21 GBP")  # change
    hebrew = page.get_by_text(HEBREW_MILK, exact=True)
    expect(hebrew).to_be_visible()
    assert hebrew.evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert page.get_by_text("Red wine 75cl").evaluate(
        "el => getComputedStyle(el).direction") == "ltr"
    assert problems(page) == []
    screenshot(page, "console-07-receipt")


def check_session_page_is_usable(page: Page, browser: Browser) -> None:
    """The claimed session page: labels, no inline styles, every form reachable by Tab,
    and no horizontal scrolling at 200% zoom."""
    assert problems(page) == []
    names = [name for _, name in focus_order(page)]
    for wanted in ("Release claim", "Product", "New quantity", "Reason", "Correct line",
                   "Cash", "Amount", "Till", "Take tender", "Close sale"):
        assert wanted in names, (wanted, names)
    with zoomed(browser, page) as big:
        expect(big.get_by_role("heading", level=1)).to_be_visible()
        assert problems(big) == []
        screenshot(big, "console-session-200")
        assert console_errors(big) == []
