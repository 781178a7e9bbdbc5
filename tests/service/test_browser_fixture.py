"""Finding the browser: Debian's chromium, and a reason to skip (or, under CI, fail) when
it or Playwright is missing."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.service import browser


def test_a_missing_chromium_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a chromium on the machine the reason says to install the Debian package."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert browser.chromium_path() is None
    assert browser.missing_reason() == "chromium is not installed (apt-get install chromium)"


def test_a_missing_playwright_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the playwright package the reason says to install the test extra."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    reason = browser.missing_reason()
    assert reason is not None
    assert "playwright" in reason
