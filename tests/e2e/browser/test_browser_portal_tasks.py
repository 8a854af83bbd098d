"""The shopper portal's other tasks in a real browser: trips -> a receipt -> dispute a
line (by keyboard alone, within the self-service limit) and a dispute over it; retention
saved and an out-of-range value refused with the reason; the recommendations opt-out;
withdrawing consent (which deletes the palms); the one-time entry code on the overview.
Every page is checked at 100% and 200% zoom, with screenshots."""

from __future__ import annotations

import pytest
from a11y import active_element, tab_to
from browser_pages import console_errors, control, screenshot, shopper_sign_in
from browser_seed_more import check_posted_page, enter_by_code
from browser_store import HEBREW_MILK, LiveStore
from playwright.sync_api import Browser, Page, expect
from test_browser_portal import check_usable

pytestmark = pytest.mark.browser

BASKET = {"MILK-3": 6, "COFFEE.250": 1}  # 6 x 6.95 + 4.25 = 45.95 GBP, paid by card
OPT_OUT = "Do not use my shopping history for recommendations"
PALM_DAYS = "Keep palm data after last use (days)"


def dispute_two_milks_by_keyboard(page: Page) -> None:
    """On the receipt page, with Tab, Shift+Tab, arrow keys, typing and Enter only:
    dispute two of the milk line (13.90 GBP, under the 20.00 GBP self-service limit)."""
    tab_to(page, f"Dispute line {HEBREW_MILK}")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    active = active_element(page)
    assert active is not None and active["name"] == "Quantity to dispute", active
    page.keyboard.press("ArrowUp")  # 1 -> 2
    milk = page.get_by_role("group", name=HEBREW_MILK)
    expect(milk.get_by_label("Quantity to dispute")).to_have_value("2")
    page.keyboard.press("Tab")
    page.keyboard.type("Two cartons were past their date")
    screenshot(page, "portal-dispute-filled")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_shopper_disputes_a_line_from_the_trips_list(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore) -> None:
    shopper = live_store.add_shopper("Miriam")
    receipt_id = live_store.settled_trip(shopper, BASKET)
    shopper_sign_in(page, base_url, shopper)
    control(page, "Trips and receipts").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Trips and receipts")
    check_usable(page, browser, "portal-trips", (f"Receipt {receipt_id}",))
    control(page, f"Receipt {receipt_id}").click()
    expect(page.get_by_text("Total 45.95 GBP", exact=True)).to_be_visible()
    check_usable(page, browser, "portal-receipt", ("Quantity to dispute", "Reason",
                                                   f"Dispute line {HEBREW_MILK}"))

    dispute_two_milks_by_keyboard(page)
    expect(page.get_by_role("status")).to_contain_text(
        "Refunded 13.90 GBP to your card. The amended receipt is shown below.")
    expect(page.locator("dl.facts")).to_contain_text(f", replacing {receipt_id}")
    expect(page.get_by_text("Total 32.05 GBP", exact=True)).to_be_visible()
    milk_row = page.get_by_role("row").filter(has_text="MILK-3")
    expect(milk_row.get_by_role("cell").nth(1)).to_have_text("4")
    hebrew = page.get_by_role("table").get_by_text(HEBREW_MILK, exact=True)
    assert hebrew.evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert page.get_by_role("table").get_by_text("Ground coffee 250g", exact=True).evaluate(
        "el => getComputedStyle(el).direction") == "ltr"
    check_usable(page, browser, "portal-receipt-amended", ("Quantity to dispute",))

    milk = page.get_by_role("group", name=HEBREW_MILK)
    milk.get_by_label("Quantity to dispute").fill("3")  # 20.85 GBP: over 20.00 GBP
    milk.get_by_label("Reason").fill("All of them were sour")
    milk.get_by_role("button").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "This refund is more than the 20.00 GBP you can claim here.")
    screenshot(page, "portal-dispute-refused")
    latest = live_store.container.receipts.latest(receipt_id)
    assert {line.code: line.quantity for line in latest.lines} == {"MILK-3": 4,
                                                                   "COFFEE.250": 1}
    assert console_errors(page) == []


def save_retention(page: Page) -> None:
    """Save 30 days for palm data and 365 for trips; then try 5000 days, which the
    browser's own validation stops and, sent anyway, the server refuses with the reason."""
    page.get_by_label(PALM_DAYS).fill("30")
    page.get_by_label("Keep trips (days)").fill("365")
    control(page, "Save retention").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Saved: palm data is kept 30 days after its last use; trips are kept 365 days.")

    palm_days = page.get_by_label(PALM_DAYS)
    palm_days.fill("5000")
    control(page, "Save retention").click()  # the browser refuses: max is 3650
    assert palm_days.evaluate("el => el.validity.rangeOverflow") is True
    assert palm_days.evaluate("el => el.validationMessage") != ""
    expect(page.get_by_role("status")).to_have_count(1)  # no new page: still the old one
    expect(page.get_by_role("alert")).to_have_count(0)
    palm_days.evaluate("el => { el.form.noValidate = true; }")  # as a browser without it
    control(page, "Save retention").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Keep palm data after last use must be a whole number of days from 1 to 3650")
    expect(page.get_by_label(PALM_DAYS)).to_have_value("30")  # nothing changed
    screenshot(page, "portal-retention-refused")


def opt_out_by_keyboard(page: Page) -> None:
    """Tick the recommendations opt-out with Space and save it with Enter."""
    expect(page.get_by_label(OPT_OUT)).not_to_be_checked()
    tab_to(page, OPT_OUT)
    page.keyboard.press("Space")
    tab_to(page, "Save choice")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(
        "Saved: your shopping history will not be used for recommendations.")
    page.reload()
    expect(page.get_by_label(OPT_OUT)).to_be_checked()


def test_shopper_sets_retention_opts_out_and_withdraws_consent(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore) -> None:
    shopper = live_store.add_shopper("Eli")
    live_store.enrol_palm(shopper)
    shopper_sign_in(page, base_url, shopper, next_path="/portal/privacy")
    check_usable(page, browser, "portal-privacy-choices",
                 (PALM_DAYS, "Keep trips (days)", "Save retention", OPT_OUT, "Save choice",
                  "Withdraw consent"))
    save_retention(page)
    opt_out_by_keyboard(page)
    token = live_store.shopper_token(shopper)
    stored = live_store.api.get("/me/choices", headers={"Authorization": f"Bearer {token}"})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"recommendations_opt_out": True, "palm_retention_days": 30,
                             "trip_retention_days": 365}, stored.json()

    control(page, "Withdraw consent").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Withdraw your consent?")
    expect(page.get_by_text("(1 enrolled palm)")).to_be_visible()
    check_usable(page, browser, "portal-consent-withdraw", ("Yes, withdraw consent", "Cancel"))
    control(page, "Yes, withdraw consent").click()
    expect(page.get_by_role("status")).to_have_text("Consent withdrawn; 1 palm deleted.")
    expect(control(page, "Give consent")).to_be_visible()
    screenshot(page, "portal-consent-withdrawn")

    control(page, "Palms").click()
    expect(page.get_by_text("You have no enrolled palms")).to_be_visible()
    check_usable(page, browser, "portal-palms-none")
    assert live_store.palms_of(shopper) == []
    assert console_errors(page) == []


def test_shopper_gets_a_one_time_entry_code(page: Page, browser: Browser, base_url: str,
                                            live_store: LiveStore) -> None:
    shopper = live_store.add_shopper("Dalia")
    shopper_sign_in(page, base_url, shopper)
    check_usable(page, browser, "portal-overview", ("Get an entry code",))
    control(page, "Get an entry code").click()
    shown = page.get_by_role("status", name="Enter without a palm")
    expect(shown).to_contain_text("Your entry code:")
    code = shown.locator("code").inner_text()
    check_posted_page(page, "portal-entry-code", ("Get an entry code",))

    admitted = enter_by_code(live_store, code)
    assert admitted["admitted"] is True and admitted["shopper_id"] == shopper.id, admitted
    again = enter_by_code(live_store, code)
    assert again["admitted"] is False and again["session_id"] is None, again  # once only
