"""Page helpers for the browser tests: screenshots, console errors, sign-in, controls
found by their accessible names, and a second view of a page at 200% zoom."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from weakref import WeakKeyDictionary

from a11y import tab_to
from browser_store import Shopper, Staff
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, ViewportSize

REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
ZOOM_200: ViewportSize = {"width": 640, "height": 400}  # a 1280x800 window at 200% zoom, CSS px
LOCALE = "en-GB"

_errors: WeakKeyDictionary[Page, list[str]] = WeakKeyDictionary()


def watch_console(page: Page) -> list[str]:
    """Record the page's console errors (CSP violations among them) and uncaught
    script errors from now on; returns the live list (also :func:`console_errors`)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    _errors[page] = errors
    return errors


# Nothing from the browser itself is expected: the pages link an inline (data:) icon, so
# the browser does not request /favicon.ico.
BROWSER_NOISE: tuple[str, ...] = ()


def console_errors(page: Page, *, allow: tuple[str, ...] = ()) -> list[str]:
    """The console errors of ``page`` so far, less those matching a regex in ``allow``
    (e.g. the "Failed to load resource ... 401" that a refused sign-in page logs)."""
    ignored = BROWSER_NOISE + allow
    return [e for e in _errors.get(page, []) if not any(re.search(a, e) for a in ignored)]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as ``test-output/screenshots/<name>.png``; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def zoomed(browser: Browser, page: Page) -> Iterator[Page]:
    """``page``'s URL opened again as at 200% zoom (640x400 CSS px, device scale 2),
    signed in with the same cookies; the context is closed afterwards."""
    context = browser.new_context(viewport=ZOOM_200, device_scale_factor=2, locale=LOCALE,
                                  storage_state=page.context.storage_state())
    try:
        view = context.new_page()
        watch_console(view)
        view.goto(page.url)
        yield view
    finally:
        context.close()


def control(page: Page, name: str) -> Locator:
    """The button or link named ``name`` (exactly)."""
    return (page.get_by_role("button", name=name, exact=True)
            .or_(page.get_by_role("link", name=name, exact=True)))


def choose(field: Locator, value: str, text: str | None = None) -> None:
    """Set ``field`` to ``value``: a <select> gets the option whose value is ``value``
    or whose label contains ``text`` (or ``value``); any other control is filled."""
    if field.evaluate("el => el.tagName") != "SELECT":
        field.fill(value)
        return
    options: list[dict[str, str]] = field.evaluate(
        "el => Array.from(el.options).map(o => ({value: o.value, label: o.label}))")
    for option in options:
        if option["value"] == value or (text or value) in option["label"]:
            field.select_option(value=option["value"])
            return
    raise AssertionError(f"no option {value!r}/{text!r} in {options}")


def staff_sign_in_by_keyboard(page: Page, base_url: str, staff: Staff,
                              password: str | None = None) -> None:
    """Sign in at /console/login with Tab, typing and Enter only (the TOTP code too,
    for roles that have one)."""
    page.goto(f"{base_url}/console/login")
    tab_to(page, "Staff id")
    page.keyboard.type(staff.id)
    tab_to(page, "Password")
    page.keyboard.type(password if password is not None else staff.password)
    if staff.totp_secret:
        tab_to(page, "One-time code")
        page.keyboard.type(staff.code())
    with page.expect_navigation():
        page.keyboard.press("Enter")


def shopper_sign_in(page: Page, base_url: str, shopper: Shopper, next_path: str = "") -> None:
    """Sign in at /portal/login (labels, typing, the Sign in button)."""
    query = f"?next={next_path}" if next_path else ""
    page.goto(f"{base_url}/portal/login{query}")
    page.get_by_label("E-mail").fill(shopper.email)
    page.get_by_label("Password", exact=True).fill(shopper.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
