"""The dashboard in a real browser: Debian's chromium (apt-get install chromium), driven by Playwright.

Playwright is pointed at /usr/bin/chromium: no browser is downloaded. Without it the tests skip here and fail
in CI (where .ci/run installs it). A dashboard (`conveyor serve`, a real uvicorn) runs for each module.

The browser lives for one module and is stopped at its end, with Playwright itself: pytest-playwright's own
fixtures keep Playwright's event loop running for the whole session, and every later test in the same
process that calls asyncio.run() would then fail ("cannot be called from a running event loop"). `browser`
and `page` here take the place of the plugin's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, for this module only."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = "chromium is not installed (apt-get install chromium): the browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a fresh context (no cookies from another test)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
