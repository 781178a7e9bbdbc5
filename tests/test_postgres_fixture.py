"""Without PostgreSQL's binaries a developer's run skips the PostgreSQL tests with the reason,
and a CI run (``CI=true``) fails them instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONE_TEST = "tests/store/test_postgres_admin.py::test_a_database_of_a_newer_schema_is_refused"


def pytest_without_binaries(*, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run one PostgreSQL test in a child pytest whose PostgreSQL bin directory is empty."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "SMITHERS_PG_BIN")}
    env["SMITHERS_PG_BIN"] = str(ROOT / "no-such-postgresql" / "bin")
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", ONE_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_developer_without_postgresql_sees_the_tests_skipped_with_the_reason() -> None:
    """Outside CI, missing binaries skip the test and say why."""
    done = pytest_without_binaries(ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "PostgreSQL tests skipped: PostgreSQL is not installed (no initdb in" in done.stdout


@pytest.mark.slow
def test_ci_without_postgresql_fails_instead_of_skipping() -> None:
    """Under CI=true, missing binaries are an error, never a skip."""
    done = pytest_without_binaries(ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout
    assert "CI needs the PostgreSQL tests to run, but PostgreSQL is not installed" in done.stdout
