"""Fixtures of the service tests: one headless Chromium per module (Debian's chromium through
Playwright; skipped without it, failed under CI). Playwright's sync API keeps an event loop
marked running while it is open, so a module parks its runs before asking for the browser
and the browser is closed before the next module's in-process runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.helpers import HANG_GUARD
from tests.service.browser import chromium_path, missing_reason


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium for a module (skipped without it, failed under CI)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser tests to run, but {reason}.")
        pytest.skip(f"Browser tests skipped: {reason}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=HANG_GUARD * 1000)  # a bound on a hang, never a timing check

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()
