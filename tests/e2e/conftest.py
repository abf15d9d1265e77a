"""The dashboard in a real browser: Debian's chromium (apt-get install chromium), driven by Playwright.

Playwright is pointed at /usr/bin/chromium: no browser is downloaded. Without it the tests skip here and fail
in CI (where .ci/run installs it). A dashboard (`conveyor serve`, a real uvicorn) runs for each module.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, with Debian's chromium instead of a downloaded one."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = "chromium is not installed (apt-get install chromium): the browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ["--no-sandbox"]}
