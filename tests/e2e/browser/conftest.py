"""Fixtures of the real-browser tests: a live server, Debian's Chromium driven by
Playwright, one fresh browser context per test, and seeded store data.

Playwright's own browser download cannot work here, so the browser is the installed
``chromium`` (``STOREFRONT_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on
PATH; ``.ci/run`` installs Debian's package when it is missing). Without a browser or
the ``playwright`` package the tests skip with the reason, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_store import CardRefused, LiveServer, LiveStore, Staff

from storefront.api.app import create_app
from storefront.bootstrap import bootstrap
from storefront.payments import SimulatedProcessor
from storefront.security.client import authenticated
from storefront.settings import Settings

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

try:
    import playwright.sync_api  # noqa: F401
    PLAYWRIGHT_MISSING: str | None = None
except ImportError as exc:
    PLAYWRIGHT_MISSING = (f"the playwright package cannot be imported ({exc}); "
                          "pip install -e '.[test]'")


def _missing(reason: str) -> None:
    """Skip with ``reason``; under ``CI=true`` fail instead (CI must run these)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


class Unavailable(pytest.File):
    """A browser test module collected without Playwright: one item that says why."""

    def collect(self) -> Iterator[pytest.Item]:
        """One :class:`UnavailableItem` standing for the module's tests."""
        item = UnavailableItem.from_parent(self, name=self.path.stem)
        item.add_marker(pytest.mark.browser)
        yield item


class UnavailableItem(pytest.Item):
    """Skips (fails under ``CI=true``) with the reason Playwright is missing."""

    def runtest(self) -> None:
        """Skip or fail with the reason."""
        _missing(str(PLAYWRIGHT_MISSING))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the skipped tests are."""
        return self.path, None, self.name


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector
                                ) -> pytest.File | None:
    """Without Playwright the test modules here cannot even be imported: collect each
    as one item that skips (or fails under CI) with the reason instead."""
    if PLAYWRIGHT_MISSING is None:
        return None
    return Unavailable.from_parent(parent, path=module_path)


def chromium_path() -> str | None:
    """The Chromium executable: ``STOREFRONT_CHROMIUM``, else the one on PATH."""
    configured = os.environ.get("STOREFRONT_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Chromium (headless) under Playwright for the whole session."""
    from playwright.sync_api import Error, expect, sync_playwright

    expect.set_options(timeout=10_000)  # assertions wait up to 10 s (a busy 2-core CI)
    path = chromium_path()
    if path is None:
        _missing("no Chromium: install Debian's chromium package or set STOREFRONT_CHROMIUM")
    driver = sync_playwright().start()
    try:
        launched = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    except Error as exc:
        driver.stop()
        _missing(f"Chromium at {path} did not start: {exc.message.splitlines()[0]}")
    try:
        yield launched
    finally:
        launched.close()
        driver.stop()


@pytest.fixture(scope="session")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStore]:
    """The store served on 127.0.0.1 (SQLite in a temporary folder, simulated card
    processor that refuses the cards the tests name), catalogue loaded."""
    processor = CardRefused(SimulatedProcessor(seed=7, decline_rate=0.0))
    container = bootstrap(Settings(data_dir=tmp_path_factory.mktemp("browser-store")),
                          processor=processor)  # type: ignore[arg-type]
    server = LiveServer(create_app(container))
    try:
        server.start()
        with authenticated(httpx.Client(base_url=server.url, timeout=60.0),
                           container.security, container.settings.store_id) as api:
            store = LiveStore(server.url, container, processor, api)
            store.add_products()
            yield store
    finally:
        server.stop()
        container.close()


@pytest.fixture(scope="session")
def base_url(live_store: LiveStore) -> str:
    """The live server's base URL (``http://127.0.0.1:PORT``)."""
    return live_store.url


@pytest.fixture(scope="session")
def cashier(live_store: LiveStore) -> Staff:
    """A cashier account (no TOTP) with till-1's drawer open."""
    staff = live_store.add_staff("cashier")
    live_store.open_till(staff)
    return staff


@pytest.fixture
def page(browser: Any, live_store: LiveStore) -> Iterator[Any]:
    """A page in a fresh context (1280x800, en-GB) whose console errors are recorded
    (``browser_pages.console_errors``)."""
    from browser_pages import LOCALE, VIEWPORT, watch_console

    context = browser.new_context(viewport=VIEWPORT, locale=LOCALE)
    context.set_default_timeout(10_000)
    view = context.new_page()
    watch_console(view)
    try:
        yield view
    finally:
        context.close()

