"""The developer approval example end to end in real processes: a detached agent works in
its own clone of a real git repository and calls back (through ``smithers signal``, or a
signed link under ``smithers serve``); approval merges its branch into main once, even when
apply is killed with SIGKILL after merging; a denial leaves main untouched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.helpers import child_env, smithers_cli, wait_for
from tests.service.helpers import opened_store, serving, status_of, token

pytestmark = pytest.mark.slow

FLOW = str(Path(__file__).resolve().parents[2] / "examples" / "developer_approval.py")
LINE = "Hello from the agent"


def git(repo: Path, *args: str) -> str:
    """git in ``repo``; its stdout."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def make_repo(folder: Path) -> Path:
    """A repository on main with NOTES.md and a unittest that checks it."""
    repo = folder / "demo"
    (repo / "tests").mkdir(parents=True)
    (repo / "NOTES.md").write_text("# Notes\n")
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_notes.py").write_text(
        "import unittest\n\n\nclass Notes(unittest.TestCase):\n"
        "    def test_has_a_title(self):\n"
        "        with open('NOTES.md') as f:\n"
        "            self.assertTrue(f.read().startswith('# Notes'))\n"
    )
    git(folder, "init", "--quiet", "-b", "main", str(repo))
    git(repo, "config", "user.name", "test")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "start")
    return repo


def _input(repo: Path) -> str:
    return json.dumps({"repo": str(repo), "file": "NOTES.md", "line": LINE})


def test_approved_merges_once_even_when_apply_is_killed(tmp_path: Path) -> None:
    """Agent via `smithers signal`; approve's process is SIGKILLed after the merge; resume
    finishes with one merge commit on main holding the change; artifacts are listed."""
    repo = make_repo(tmp_path)
    store = tmp_path / "store"
    env = child_env(SMITHERS_STORE=str(store))

    def cli(*args: str, **extra: str) -> object:
        return smithers_cli(store, *args, cwd=tmp_path, env={**env, **extra})

    started = cli("run", FLOW, "--run-id", "dev", "--input", _input(repo))
    assert started.code == 3, started.err  # type: ignore[attr-defined]
    wait_for(lambda: status_of(store, "dev") == "waiting-approval", "the agent's callback")
    listed = cli("artifact", "ls", "dev")
    names = sorted(line.split()[-1] for line in listed.out.splitlines())  # type: ignore[attr-defined]
    assert names == ["change.diff", "test.log"]
    killed = cli("approve", "dev", "--by", "lead", SMITHERS_EXAMPLE_CRASH_AFTER_MERGE="dev")
    assert killed.code == -9, killed.err  # type: ignore[attr-defined]
    assert len(git(repo, "log", "main", "--merges", "--format=%H").splitlines()) == 1
    done = cli("resume", "dev")
    assert done.code == 0, done.err  # type: ignore[attr-defined]
    assert len(git(repo, "log", "main", "--merges", "--format=%H").splitlines()) == 1
    assert git(repo, "show", "main:NOTES.md").splitlines()[-1] == LINE
    with opened_store(store) as s:
        attempts = [a for a in s.attempts("dev") if a.node_id == "apply"]
        assert len(attempts) == 2  # the killed one and the retry that found the merge


def test_the_signed_link_callback_then_a_denial_leaves_main_alone(tmp_path: Path) -> None:
    """Under `smithers serve` the agent POSTs to its signed link; a denial fails the run and
    main keeps its single commit."""
    repo = make_repo(tmp_path)
    store = tmp_path / "store"
    with serving(store, tmp_path) as served:
        env = child_env(SMITHERS_BASE_URL=served.url)
        started = smithers_cli(
            store, "run", FLOW, "--run-id", "dev", "--input", _input(repo), cwd=tmp_path, env=env
        )
        assert started.code == 3, started.err
        wait_for(lambda: status_of(store, "dev") == "waiting-approval", "the link callback")
        log = (tmp_path / "agent-dev.log").read_text()
        assert "callback answered 200" in log  # the signed link, not `smithers signal`
        secret = token(store, tmp_path, "lead", "approver")
        with served.client(secret) as client:
            denied = client.post(
                "/api/v1/runs/dev/nodes/approve-change/deny", json={"note": "not now"}
            )
            assert denied.status_code == 200, denied.text
        wait_for(lambda: status_of(store, "dev") == "failed", "the denial applied")
    assert git(repo, "log", "main", "--format=%s").splitlines() == ["start"]
    assert "smithers/dev" in git(repo, "branch", "--list")  # the agent's branch, unmerged


def test_two_change_requests_to_one_repository_run_one_after_the_other(tmp_path: Path) -> None:
    """The second request is queued behind the first; approving the first starts the second
    (its agent clones the merged main), so both changes land without a conflict."""
    repo = make_repo(tmp_path)
    store = tmp_path / "store"
    env = child_env(SMITHERS_STORE=str(store))

    def cli(*args: str) -> object:
        return smithers_cli(store, *args, cwd=tmp_path, env=env)

    cli("run", FLOW, "--run-id", "one", "--input", _input(repo))
    second = json.dumps({"repo": str(repo), "line": "Second"})
    queued = cli("run", FLOW, "--run-id", "two", "--input", second)
    assert queued.code == 3, queued.err  # type: ignore[attr-defined]
    assert "Queued behind run one" in queued.out  # type: ignore[attr-defined]
    wait_for(lambda: status_of(store, "one") == "waiting-approval", "the first agent")
    assert status_of(store, "two") == "queued"
    assert cli("approve", "one", "--by", "lead").code == 0  # type: ignore[attr-defined]
    wait_for(lambda: status_of(store, "two") == "waiting-approval", "the second agent")
    assert cli("approve", "two", "--by", "lead").code == 0  # type: ignore[attr-defined]
    assert git(repo, "show", "main:NOTES.md").splitlines()[-2:] == [LINE, "Second"]
    assert len(git(repo, "log", "main", "--merges", "--format=%H").splitlines()) == 2
