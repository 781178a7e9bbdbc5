"""CLI test fixtures: every test runs in its own temp directory with its own store."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path, and forget the workflow modules and sys.path entries a test loaded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    root = str(tmp_path)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) or ""
        if file.startswith(root) or name.startswith("_smithers_workflow_"):
            del sys.modules[name]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """The store directory the test passes with --store (created by the first run)."""
    return tmp_path / "s"
