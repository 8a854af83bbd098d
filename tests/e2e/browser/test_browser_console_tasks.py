"""The staff console's other tasks in a real browser: deciding a flagged event in the
review queue, refunds within the cashier's limit (done by keyboard alone) and over it,
tills (open a drawer, X report; a manager's Z report with the difference), and the
live sessions page. Every page is checked at 100% and 200% zoom, with screenshots."""

from __future__ import annotations

import pytest
from a11y import active_element, tab_to
from browser_pages import console_errors, control, screenshot, staff_sign_in_by_keyboard
from browser_seed_more import check_posted_page, flagged_staffed_session, shopper_in_store
from browser_store import HEBREW_MILK, LiveStore, Staff
from playwright.sync_api import Browser, Page, expect
from test_browser_portal import check_usable

from storefront.errors import NotFound

pytestmark = pytest.mark.browser

HEBREW_SHOPPER = "נועה לוי"
REFUND_BASKET = {"MILK-3": 4, "WATER": 1}  # 4 x 6.95 + 0.95 = 28.75 GBP, paid by card


def direction(page: Page, text: str) -> str:
    """The computed CSS direction of the element showing exactly ``text``."""
    found: str = page.get_by_text(text, exact=True).first.evaluate(
        "el => getComputedStyle(el).direction")
    return found


def test_cashier_corrects_a_flagged_event_in_the_review_queue(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore,
        cashier: Staff) -> None:
    flagged = flagged_staffed_session(live_store)
    _, waiting = shopper_in_store(live_store, "Avi")
    staff_sign_in_by_keyboard(page, base_url, cashier)
    page.goto(f"{base_url}/console/review")
    form = page.get_by_role("form", name=flagged.form_name)
    expect(form).to_be_visible()
    waiting_row = page.get_by_role("row").filter(has_text=waiting.session_id)
    expect(waiting_row).to_contain_text("Not yet:")  # still in the store: no form
    expect(page.get_by_role("form", name=waiting.form_name)).to_have_count(0)
    check_usable(page, browser, "console-review", ("Decision", "Corrected quantity",
                                                   "Reason", "Resolve"))

    form.get_by_label("Decision").select_option(label="Correct")
    form.get_by_label("Corrected quantity").fill("1")
    form.get_by_label("Reason").fill("Counted one bottle in the bag")
    form.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Flag {flagged.device_id}#1 of {flagged.session_id} resolved (correct; WATER 0 -> 1)")
    expect(page.get_by_role("form", name=flagged.form_name)).to_have_count(0)
    screenshot(page, "console-review-resolved")

    cart = live_store.staffed_cart(flagged.session_id)
    assert {line["code"]: line["quantity"] for line in cart["lines"]} == {"MILK-3": 1,
                                                                          "WATER": 1}
    assert [(f["device_seq"], f["resolved_by"]) for f in cart["flags"]] == [(1, cashier.id)]
    assert console_errors(page) == []


def refund_by_keyboard(page: Page, receipt_id: str) -> None:
    """From the console's start page, with Tab, Shift+Tab, typing, arrow keys and Enter
    only: find the receipt and refund one milk."""
    tab_to(page, "Refunds")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to(page, "Receipt id")
    page.keyboard.type(receipt_id)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Receipt {receipt_id}")).to_be_visible()

    tab_to(page, "Product")
    product = page.get_by_label("Product", exact=True)
    for _ in range(len(REFUND_BASKET)):
        if product.input_value() == "MILK-3":
            break
        page.keyboard.press("ArrowDown")
    assert product.input_value() == "MILK-3"
    page.keyboard.press("Tab")
    assert active_element(page)["name"] == "Quantity"  # type: ignore[index]
    page.keyboard.type("1")
    page.keyboard.press("Tab")
    page.keyboard.type("One carton was sour")
    page.keyboard.press("Shift+Tab")  # back to check the quantity
    assert active_element(page)["name"] == "Quantity"  # type: ignore[index]
    expect(page.get_by_label("Quantity", exact=True)).to_have_value("1")
    tab_to(page, "Till")
    page.keyboard.press("Tab")
    active = active_element(page)
    assert active is not None and (active["tag"], active["name"]) == ("button", "Refund")
    screenshot(page, "console-refund-filled")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_cashier_refunds_by_keyboard_and_is_refused_over_the_limit(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore,
        cashier: Staff) -> None:
    receipt_id = live_store.settled_trip(live_store.add_shopper("Yossi"), REFUND_BASKET)
    staff_sign_in_by_keyboard(page, base_url, cashier)
    refund_by_keyboard(page, receipt_id)

    expect(page.get_by_role("status")).to_contain_text(
        "Refunded 6.95 GBP (card 6.95 GBP, cash 0.00 GBP).")
    expect(page.get_by_role("heading", name="Receipt", level=1)).to_be_visible()
    expect(page.get_by_text("Total 21.80 GBP", exact=True)).to_be_visible()
    milk_row = page.get_by_role("row").filter(has_text="MILK-3")
    expect(milk_row.get_by_role("cell").first).to_have_text("3")
    assert direction(page, HEBREW_MILK) == "rtl"
    check_usable(page, browser, "console-refund-receipt", ("Print receipt",))

    page.goto(f"{base_url}/console/refunds/{receipt_id}")
    check_usable(page, browser, "console-refund", ("Product", "Quantity", "Reason", "Refund"))
    page.get_by_label("Product", exact=True).select_option(value="MILK-3")
    page.get_by_label("Quantity", exact=True).fill("3")  # 20.85 GBP: over 20.00 GBP
    page.get_by_label("Reason", exact=True).fill("The whole pack was sour")
    control(page, "Refund").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("over your limit of 20.00 GBP: ask a manager")
    screenshot(page, "console-refund-refused")
    latest = live_store.container.receipts.latest(receipt_id)
    assert {line.code: line.quantity for line in latest.lines} == {"MILK-3": 3, "WATER": 1}
    assert console_errors(page) == []


def test_drawer_opened_by_a_cashier_and_closed_by_a_manager(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore,
        cashier: Staff) -> None:
    till = f"till-{live_store.next_serial()}"
    staff_sign_in_by_keyboard(page, base_url, cashier)
    page.goto(f"{base_url}/console/tills")
    expect(page.get_by_text("Only a manager can close a drawer")).to_be_visible()
    check_usable(page, browser, "console-tills", ("Till", "Float", "Open drawer",
                                                  "Show X report"))
    opening = page.get_by_role("form", name="Open a drawer")
    opening.get_by_label("Till").fill(till)
    opening.get_by_label("Float").fill("50.00")
    control(page, "Open drawer").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Drawer opened at {till} with a float of 50.00 GBP.")

    page.goto(f"{base_url}/console/tills")
    x_form = page.get_by_role("form", name="X report")
    x_form.get_by_label("Till").fill(till)
    control(page, "Show X report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"X report: till {till}")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Expected cash")
    expect(facts.locator("dt:text-is('Expected cash') + dd")).to_have_text("50.00 GBP")
    check_usable(page, browser, "console-x-report", ("Back to the tills",))

    manager = live_store.add_staff("manager")
    staff_sign_in_by_keyboard(page, base_url, manager)
    page.goto(f"{base_url}/console/tills")
    z_form = page.get_by_role("form", name="Z report")
    z_form.get_by_label("Till").fill(till)
    z_form.get_by_label("Counted cash").fill("48.50")
    control(page, "Close drawer (Z report)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Z report: till {till}")
    expect(facts.locator("dt:text-is('Difference') + dd")).to_have_text(
        "-1.50 GBP (cash missing)")
    expect(facts.locator("dt:text-is('Counted cash') + dd")).to_have_text("48.50 GBP")
    check_posted_page(page, "console-z-report", ("Print report",))
    with pytest.raises(NotFound, match=f"no cash drawer is open at till {till}"):
        live_store.container.till.x_report(till_id=till)  # the drawer is closed


def test_live_sessions_list_a_shopper_in_the_store(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore,
        cashier: Staff) -> None:
    _, inside = shopper_in_store(live_store, HEBREW_SHOPPER)
    staff_sign_in_by_keyboard(page, base_url, cashier)
    assert page.url == f"{base_url}/console"
    row = page.get_by_role("row").filter(has_text=inside.session_id)
    expect(row).to_contain_text(HEBREW_SHOPPER)
    cells = row.get_by_role("cell")
    expect(cells.nth(2)).to_have_text("1")  # one coffee
    expect(row.get_by_role("link", name="1")).to_have_attribute("href", "/console/review")
    assert direction(page, HEBREW_SHOPPER) == "rtl"
    check_usable(page, browser, "console-live", ("Live sessions", "Review queue"))
    assert console_errors(page) == []
