"""The README's Python API example runs as written, in a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import HANG_GUARD, ROOT, child_env


def _python_api_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The Python API") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the Python API section has no python block"
    return found.group(1)


def test_the_python_api_example_runs(tmp_path: Path) -> None:
    """The example starts a run, sees it wait, approves it and resumes it to finished."""
    done = subprocess.run(
        [sys.executable, "-c", _python_api_example()],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "approve-deploy Deploy 1.4.3?",
        "finished Published(status='approved')",
    ]
