"""Finding the browser the web page tests drive: Debian's ``chromium`` (never Playwright's
own download), and why it cannot be used when it cannot."""

from __future__ import annotations

import importlib.util
import shutil

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The chromium executable, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install '.[test]')"
    if chromium_path() is None:
        return "chromium is not installed (apt-get install chromium)"
    return None
