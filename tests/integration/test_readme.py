"""The README's Python API example runs as written, in a fresh process."""

from __future__ import annotations

import re
import shlex
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


def _policies_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Approval policies and time")
    return readme[start : readme.index("\n## ", start)]


def test_the_policies_example_is_examples_release(tmp_path: Path) -> None:
    """The README's release gate is the code of examples/release.py."""
    found = re.search(r"```python\n(.*?)```", _policies_section(), re.S)
    assert found is not None
    shipped = (ROOT / "examples" / "release.py").read_text(encoding="utf-8")
    assert shipped.endswith(found.group(1))


def test_the_policies_transcript_runs_as_written(tmp_path: Path) -> None:
    """Each command of the transcript exits as its comment says and prints the lines shown
    (time from a test clock file: 09:00:00, then 09:00:01 from bob's vote on)."""
    from smithers.runtime.clock import FileClock, parse_iso

    found = re.search(r"```console\n(.*?)```", _policies_section(), re.S)
    assert found is not None
    (tmp_path / "release.py").write_text(
        (ROOT / "examples" / "release.py").read_text(encoding="utf-8")
    )
    clock = tmp_path / "clock"
    FileClock.write(str(clock), parse_iso("2026-12-01T09:00:00Z"))
    env = child_env(PYTHONPATH=str(ROOT), SMITHERS_TEST_CLOCK_FILE=str(clock))
    steps: list[tuple[str, list[str]]] = []
    for line in found.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    for command, expected in steps:
        argv, _, comment = command.partition("#")
        if "--by bob" in argv:
            FileClock.write(str(clock), parse_iso("2026-12-01T09:00:01Z"))
        code = int(comment.split("exits")[1].split()[0].rstrip(":")) if "exits" in comment else 0
        done = subprocess.run(
            [sys.executable, "-m", "smithers", *shlex.split(argv)[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
        assert done.returncode == code, (command, done.stdout, done.stderr)
        printed = done.stdout.splitlines() + done.stderr.splitlines()
        missing = [line for line in expected if line not in printed]
        assert not missing, (command, printed)
