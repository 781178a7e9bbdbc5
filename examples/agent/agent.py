"""A remote coding agent for `developer_approval.py`: its own process, its own working copy.

Started (detached) by the workflow's `start-agent` task, it clones the target repository,
makes the requested change on a new branch, runs the repository's tests, pushes the branch
back, and reports the result to the run:

- with ``--callback URL`` (a signed link, ``task.signal_link``): POSTs the result as JSON
  there; no token is needed, the link is the permission;
- with ``--signal-cli``: runs ``smithers signal RUN_ID --node NODE --data @result.json``
  (for agents that reach the store but not the server; ``$SMITHERS_STORE`` names it).

Nothing stays connected while it works: the run waits in ``waiting-signal``.

    python examples/agent/agent.py --run-id R --node agent-done --repo /path/to/repo \\
        --branch smithers/R --file NOTES.md --line "Hello" --callback http://.../hooks/...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def work(repo: str, branch: str, file: str, line: str, workdir: Path) -> dict[str, object]:
    """Clone ``repo``, append ``line`` to ``file`` on ``branch``, run the tests, push."""
    clone = workdir / "clone"
    git(workdir, "clone", "--quiet", repo, str(clone))
    git(clone, "config", "user.name", "smithers agent")
    git(clone, "config", "user.email", "agent@smithers.invalid")
    git(clone, "checkout", "--quiet", "-b", branch)
    target = clone / file
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    git(clone, "add", file)
    git(clone, "commit", "--quiet", "-m", f"Add to {file}: {line}")
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-v"],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    git(clone, "push", "--quiet", "origin", branch)
    return {
        "branch": branch,
        "commit": git(clone, "rev-parse", "HEAD").strip(),
        "diff": git(clone, "diff", "HEAD~1", "HEAD"),
        "log": tests.stdout + tests.stderr,
        "tests_passed": tests.returncode == 0,
    }


def report(result: dict[str, object], args: argparse.Namespace, workdir: Path) -> None:
    """Send the result to the run: POST to the signed link, or `smithers signal`."""
    body = json.dumps(result).encode()
    if args.callback:
        request = urllib.request.Request(
            args.callback, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"callback answered {response.status}", flush=True)
        return
    data = workdir / "result.json"
    data.write_bytes(body)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "smithers",
            "signal",
            args.run_id,
            "--node",
            args.node,
            "--data",
            f"@{data}",
        ],
        check=True,
    )


def main() -> int:
    """Parse the arguments, do the work, report it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--branch", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--line", required=True)
    parser.add_argument("--callback", help="the signed signal link to POST the result to")
    parser.add_argument("--signal-cli", action="store_true", help="use `smithers signal`")
    args = parser.parse_args()
    if not args.callback and not args.signal_cli:
        parser.error("pass --callback URL or --signal-cli")
    with tempfile.TemporaryDirectory(prefix="smithers-agent-") as folder:
        result = work(args.repo, args.branch, args.file, args.line, Path(folder))
        report(result, args, Path(folder))
    print(f"agent done: {result['branch']} at {result['commit']}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    sys.exit(main())
