"""The README's developer approval walkthrough runs as written (on free ports instead of
8400 and 8500): the agent calls back, the chat gets the gate's message, approval merges."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import HANG_GUARD, ROOT, child_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The developer approval flow, end to end") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found is not None, "the walkthrough has no sh block"
    return found.group(1)


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Every command exits 0 under bash -e; main gets one merge commit; the chat the notice."""
    script = _walkthrough().replace("8400", str(_free_port())).replace("8500", str(_free_port()))
    script = script.replace('cd "$(mktemp -d)"', f"cd {tmp_path}")
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD * 2,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Merge smithers/cr1" in done.stdout
    chat = (tmp_path / "chat.log").read_text()
    assert "/hooks/" in chat
    assert "change.diff (res://sha256/" in chat
