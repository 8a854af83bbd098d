"""The browser checks themselves find what they look for: a page with unlabelled
controls, inline styles and a fixed width fails them; a CSP violation under the
page CSP reaches the recorded console errors; the focus order starts at the top."""

from __future__ import annotations

import pytest
from a11y import focus_order, horizontal_overflow, inline_styles, problems, unnamed_controls
from browser_pages import console_errors
from playwright.sync_api import Page, Route

from storefront.security.headers import PAGE_CSP

pytestmark = pytest.mark.browser

BAD = """<!doctype html><html lang="en"><body>
<input id="loose" name="q">
<select name="pick"><option>a</option></select>
<button id="empty"></button>
<a href="/x"></a>
<div style="width: 3000px">wide</div>
<input type="hidden" name="fine">
<label>Wrapped <input id="wrapped"></label>
<label for="named">Named</label><input id="named">
<input id="aria" aria-label="Search">
<span id="lbl">Quantity</span><input id="by" aria-labelledby="lbl">
<button>Go</button><input type="submit" value="Send">
</body></html>"""

GOOD = """<!doctype html><html lang="en"><body>
<a href="#main">Skip</a><main id="main">
<label for="a">First</label><input id="a"><label for="b">Second</label>
<select id="b"><option>x</option></select><button>Send</button></main></body></html>"""


def test_checks_find_unnamed_controls_inline_styles_and_overflow(page: Page) -> None:
    page.set_content(BAD)
    assert unnamed_controls(page) == ["input#loose[name=q]", "select[name=pick]",
                                      "button#empty", "a"]
    assert inline_styles(page) == ['div style="width: 3000px"']
    assert horizontal_overflow(page) > 1000
    assert len(problems(page)) == 6


def test_checks_pass_a_clean_page_and_tab_from_the_top(page: Page) -> None:
    page.set_content(GOOD)
    assert problems(page) == []
    page.get_by_role("button", name="Send").focus()  # focus order still starts at the top
    assert focus_order(page) == [("a", "Skip"), ("input", "First"), ("select", "Second"),
                                 ("button", "Send")]


def test_csp_violations_reach_the_console_errors(page: Page, base_url: str) -> None:
    def serve(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8",
                      headers={"Content-Security-Policy": PAGE_CSP},
                      body='<!doctype html><p style="color: red">x</p>'
                           "<script>document.title = 'ran';</script>")

    page.route(f"{base_url}/kiosk/csp-probe", serve)
    page.goto(f"{base_url}/kiosk/csp-probe")
    page.wait_for_timeout(200)
    assert page.title() != "ran"  # the inline script was refused...
    errors = console_errors(page)
    assert any("Content Security Policy" in e and "script" in e for e in errors), errors
    assert any("Content Security Policy" in e and "style" in e for e in errors), errors
