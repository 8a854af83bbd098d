"""The shopper's main tasks in a real browser: export my data, delete a palm, delete my
account (portal), and enrol a palm at the kiosk; every page is checked for labels,
inline styles and 200% zoom, and screenshots are kept."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from a11y import focus_order, problems
from browser_pages import console_errors, control, screenshot, shopper_sign_in, zoomed
from browser_store import LiveStore, Shopper, palm_png
from playwright.sync_api import Browser, FilePayload, Page, expect

pytestmark = pytest.mark.browser


def check_usable(page: Page, browser: Browser, name: str, tab_reaches: tuple[str, ...] = ()
                 ) -> None:
    """``page`` passes the checks at 100% and, opened again, at 200% zoom, and Tab
    alone reaches the controls named ``tab_reaches``; screenshots ``<name>-100`` and
    ``<name>-200``."""
    assert problems(page) == [], name
    names = [n for _, n in focus_order(page)]
    assert all(any(n.startswith(want) for n in names) for want in tab_reaches), \
        (tab_reaches, names)
    screenshot(page, f"{name}-100")
    with zoomed(browser, page) as big:
        expect(big.get_by_role("heading", level=1)).to_be_visible()
        assert problems(big) == [], name
        screenshot(big, f"{name}-200")
        assert console_errors(big) == [], name


def test_shopper_exports_then_deletes_a_palm_and_the_account(
        page: Page, browser: Browser, base_url: str, live_store: LiveStore) -> None:
    shopper = live_store.add_shopper("Noa Levi")
    live_store.enrol_palm(shopper)
    receipt_id = live_store.settled_trip(shopper, {"MILK-3": 1, "COFFEE.250": 1})
    shopper_sign_in(page, base_url, shopper)

    export_my_data(page, browser, base_url, shopper, receipt_id)
    delete_palm(page, browser, base_url)
    assert live_store.palms_of(shopper) == []
    delete_account(page, browser, base_url)

    page.goto(f"{base_url}/portal")
    assert re.fullmatch(rf"{re.escape(base_url)}/portal/login\?next=%2Fportal", page.url)
    page.get_by_label("E-mail").fill(shopper.email)
    page.get_by_label("Password", exact=True).fill(shopper.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the login is gone too
    assert console_errors(page, allow=(r"status of 401",)) == []


def export_my_data(page: Page, browser: Browser, base_url: str, shopper: Shopper,
                   receipt_id: str) -> None:
    """Ask for the export, wait for the page to offer it, download and open the zip."""
    page.goto(f"{base_url}/portal/privacy")
    check_usable(page, browser, "portal-privacy",
                 ("Prepare my data export", "Delete my account"))
    control(page, "Prepare my data export").click()
    link = page.get_by_role("link", name="Download export").first
    expect(link).to_be_visible(timeout=20_000)  # the page refreshes itself until ready
    screenshot(page, "portal-export-ready")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes()))
    data = json.loads(archive.read("data.json"))
    assert data["shopper_id"] == shopper.id
    dumped = json.dumps(data, ensure_ascii=False)
    assert shopper.email in dumped and receipt_id in dumped
    assert any(n.endswith(".csv") for n in archive.namelist()), archive.namelist()


def delete_palm(page: Page, browser: Browser, base_url: str) -> None:
    """Delete the only palm through its confirmation page."""
    page.goto(f"{base_url}/portal/palms")
    check_usable(page, browser, "portal-palms", ("Delete palm 1",))
    control(page, "Delete palm 1").click()
    check_usable(page, browser, "portal-palm-delete", ("Yes, delete this palm",))
    control(page, "Yes, delete this palm").click()
    expect(control(page, "Delete palm 1")).to_have_count(0)
    expect(page.get_by_text("You have no enrolled palms")).to_be_visible()
    screenshot(page, "portal-palm-deleted")


def delete_account(page: Page, browser: Browser, base_url: str) -> None:
    """Delete the account from the privacy page, typing DELETE to confirm."""
    page.goto(f"{base_url}/portal/privacy")
    control(page, "Delete my account").first.click()
    check_usable(page, browser, "portal-account-delete",
                 ("Type DELETE to confirm", "Delete my account"))
    page.get_by_label("Type DELETE to confirm").fill("DELETE")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("deleted")
    assert problems(page) == []
    screenshot(page, "portal-account-deleted")
    assert not any(c["name"] == "sf_shopper" for c in page.context.cookies())


def test_kiosk_enrols_a_palm(page: Page, browser: Browser, base_url: str,
                             live_store: LiveStore) -> None:
    shopper = live_store.add_shopper("Yael Cohen")
    shopper_sign_in(page, base_url, shopper, next_path="/kiosk/enrol")
    assert page.url == f"{base_url}/kiosk/enrol"
    check_usable(page, browser, "kiosk-enrol",
                 ("I have read and agree to palm identification", "Palm captures", "Enrol"))

    page.get_by_label("I have read and agree to palm identification").check()
    palm = live_store.next_serial()
    captures: list[FilePayload] = [
        {"name": f"capture-{c}.png", "mimeType": "image/png", "buffer": palm_png(palm, c)}
        for c in range(3)]
    page.get_by_label("Palm captures").set_input_files(captures)
    screenshot(page, "kiosk-enrol-filled")
    control(page, "Enrol").click()
    results = page.get_by_text(re.compile(r"\bAccepted\b"))
    expect(results).to_have_count(3)
    assert problems(page) == []
    screenshot(page, "kiosk-enrol-done")
    palms = live_store.palms_of(shopper)
    assert len(palms) == 1 and palms[0]["templates"] == 3, palms
    assert console_errors(page) == []
