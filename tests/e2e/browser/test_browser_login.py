"""Signing in, in a real browser: staff by keyboard alone (a manager with a TOTP code),
a wrong password answered with an alert, shoppers; the start and sign-in pages are
usable at 100% and 200% zoom, by keyboard, and load under the page CSP without errors."""

from __future__ import annotations

import pytest
from a11y import focus_order, problems, tab_to
from browser_pages import (
    console_errors,
    screenshot,
    shopper_sign_in,
    staff_sign_in_by_keyboard,
    zoomed,
)
from browser_store import LiveStore, Staff
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

REFUSED_SIGN_IN = (r"status of 401",)  # Chromium logs the refused sign-in page's status


def cookie(page: Page, name: str) -> dict[str, object] | None:
    """The browser's cookie ``name`` for this context, if any."""
    return next((dict(c) for c in page.context.cookies() if c["name"] == name), None)


def test_cashier_signs_in_by_keyboard_alone(page: Page, base_url: str, cashier: Staff) -> None:
    staff_sign_in_by_keyboard(page, base_url, cashier)
    assert page.url == f"{base_url}/console"
    expect(page.get_by_role("status")).to_contain_text(f"Signed in as {cashier.id} (cashier)")
    session = cookie(page, "sf_staff")
    assert session is not None and session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    screenshot(page, "login-cashier-signed-in")

    tab_to(page, "Sign out")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base_url}/console/login"
    expect(page.get_by_role("status")).to_contain_text("Signed out.")
    assert cookie(page, "sf_staff") is None
    assert console_errors(page) == []


def test_manager_signs_in_with_a_one_time_code_by_keyboard(page: Page, base_url: str,
                                                           live_store: LiveStore) -> None:
    manager = live_store.add_staff("manager")
    staff_sign_in_by_keyboard(page, base_url, manager)
    assert page.url == f"{base_url}/console"
    expect(page.get_by_role("status")).to_contain_text(f"Signed in as {manager.id} (manager)")
    assert cookie(page, "sf_staff") is not None
    screenshot(page, "login-manager-signed-in")
    assert console_errors(page) == []


def test_manager_without_the_code_and_wrong_password_get_an_alert(
        page: Page, base_url: str, live_store: LiveStore, cashier: Staff) -> None:
    staff_sign_in_by_keyboard(page, base_url, cashier, password="not-the-password-at-all")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("staff id, password or one-time code is not valid")
    assert page.url == f"{base_url}/console/login"
    expect(page.get_by_label("Staff id")).to_have_value(cashier.id)
    expect(page.get_by_label("Password")).to_have_value("")
    assert cookie(page, "sf_staff") is None
    screenshot(page, "login-wrong-password")

    manager = live_store.add_staff("manager")  # the right password, but no TOTP code
    no_code = Staff(manager.id, manager.password, "cashier")
    staff_sign_in_by_keyboard(page, base_url, no_code)
    expect(page.get_by_role("alert")).to_contain_text("is not valid")
    assert cookie(page, "sf_staff") is None
    assert console_errors(page, allow=REFUSED_SIGN_IN) == []


def test_shopper_signs_in_and_out(page: Page, base_url: str, live_store: LiveStore) -> None:
    shopper = live_store.add_shopper()
    shopper_sign_in(page, base_url, shopper)
    assert page.url == f"{base_url}/portal"
    expect(page.get_by_role("status")).to_contain_text("Signed in.")
    session = cookie(page, "sf_shopper")
    assert session is not None and session["httpOnly"] and session["sameSite"] == "Strict"
    screenshot(page, "login-shopper-signed-in")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("Signed out.")
    assert page.url == f"{base_url}/portal/login"
    assert cookie(page, "sf_shopper") is None

    page.get_by_label("E-mail").fill(shopper.email)
    page.get_by_label("Password", exact=True).fill("wrong password, clearly")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value(shopper.email)
    screenshot(page, "login-shopper-wrong-password")
    assert console_errors(page, allow=REFUSED_SIGN_IN) == []


PAGES = {"index": ("/", ["My account", "Enrol a palm", "Staff console"]),
         "console-login": ("/console/login", ["Staff id", "Password", "One-time code",
                                              "Sign in"]),
         "portal-login": ("/portal/login", ["E-mail", "Password",
                                            "One-time code (if you turned it on)", "Sign in"])}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_is_usable_by_everyone(page: Page, browser: Browser, base_url: str,
                                    name: str) -> None:
    path, controls = PAGES[name]
    response = page.goto(f"{base_url}{path}")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    assert "unsafe-inline" not in csp, csp
    assert problems(page) == []
    order = focus_order(page)
    assert order[0] == ("a", "Skip to main content"), order
    names = [n for _, n in order]
    assert all(c in names for c in controls), (controls, order)
    screenshot(page, f"{name}-100")
    with zoomed(browser, page) as big:
        assert problems(big) == []
        assert [n for _, n in focus_order(big)] == names
        screenshot(big, f"{name}-200")
        assert console_errors(big) == []
    assert console_errors(page) == []
