"""The developer approval flow, for real: plan -> a remote agent works in its own process
and calls back -> its diff and test log become artifacts -> approval (links in the chat
notice) -> apply merges the agent's branch into main -> notify.

Everything runs on this machine: the target is a local git repository (``repo``), the agent
is `examples/agent/agent.py`, started detached by `start-agent` with a signed callback link
(``smithers serve`` sets the base URL) or, without a server, told to use ``smithers signal``.
Two change requests to one repository never run at once (``concurrency_key``).

    smithers serve &                       # or: without a server, see README
    smithers run examples/developer_approval.py \\
        --input '{"repo": "/tmp/demo", "file": "NOTES.md", "line": "Hello"}'
    smithers approve RUN_ID --node approve-change --note "Looks right"
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec

from smithers import (
    Approval,
    ApprovalRequest,
    Artifact,
    Sequence,
    Signal,
    Task,
    TaskInfo,
    Workflow,
    smithers,
)
from smithers.errors import LinkError

AGENT = Path(__file__).resolve().parent / "agent" / "agent.py"


class ChangeRequest(msgspec.Struct):
    repo: str
    file: str = "NOTES.md"
    line: str = "Hello from the agent"


class Plan(msgspec.Struct):
    repo: str
    branch: str
    file: str
    line: str


class AgentJob(msgspec.Struct):
    pid: int
    callback: str


class AgentResult(msgspec.Struct):
    branch: str
    commit: str
    diff: str
    log: str
    tests_passed: bool


class Review(msgspec.Struct):
    diff: Artifact
    log: Artifact


class Merge(msgspec.Struct):
    commit: str
    branch: str


class Notice(msgspec.Struct):
    text: str


def make_plan(change: ChangeRequest, task: TaskInfo) -> Plan:
    branch = f"smithers/{task.run_id}"
    return Plan(repo=change.repo, branch=branch, file=change.file, line=change.line)


def start_agent(plan: Plan, task: TaskInfo) -> AgentJob:
    """Start the agent detached; it reports to `agent-done` through a signed link (or
    `smithers signal` without a base URL). Nothing here waits for it."""
    args = [sys.executable, str(AGENT), "--run-id", task.run_id, "--node", "agent-done"]
    args += ["--repo", plan.repo, "--branch", plan.branch, "--file", plan.file]
    args += ["--line", plan.line]
    try:
        callback = task.signal_link("agent-done", expires_in=3600)
        args += ["--callback", callback]
    except LinkError:  # no base URL: the agent calls `smithers signal` instead
        callback = "smithers signal"
        args += ["--signal-cli"]
    with open(f"agent-{task.run_id}.log", "ab") as log:  # in the run's directory
        proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
    return AgentJob(pid=proc.pid, callback=callback)


def persist(result: AgentResult, task: TaskInfo) -> Review:
    """The diff and the test log, stored once with the run; the gate shows their refs."""
    return Review(
        diff=task.artifacts.put(result.diff, name="change.diff"),
        log=task.artifacts.put(result.log, name="test.log"),
    )


def review_request(plan: Plan, review: Review, result: AgentResult) -> ApprovalRequest:
    return ApprovalRequest(
        title=f"Merge {plan.branch} into main of {os.path.basename(plan.repo)}?",
        summary=f"{review.diff.size} bytes of diff; tests "
        f"{'passed' if result.tests_passed else 'FAILED'}.",
        metadata={"diff": review.diff, "log": review.log, "branch": plan.branch},
    )


def git(repo: str, *args: str) -> str:
    done = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def apply(plan: Plan, task: TaskInfo) -> Merge:
    """Merge the agent's branch into main, once: the merge commit carries the idempotency key,
    so a retried attempt (after a crash) finds it and merges nothing."""
    marker = f"Smithers-Key: {task.idempotency_key}"
    found = git(plan.repo, "log", "main", "--format=%H", "--fixed-strings", f"--grep={marker}")
    if found:
        return Merge(commit=found.splitlines()[0], branch=plan.branch)
    git(plan.repo, "checkout", "--quiet", "main")
    who = ["-c", "user.name=smithers", "-c", "user.email=smithers@localhost"]
    message = f"Merge {plan.branch}\n\n{marker}"
    git(plan.repo, *who, "merge", "--no-ff", "--quiet", plan.branch, "-m", message)
    if os.environ.get("SMITHERS_EXAMPLE_CRASH_AFTER_MERGE") == task.run_id:
        os.kill(os.getpid(), signal.SIGKILL)  # for the tests: die before the output commits
    return Merge(commit=git(plan.repo, "rev-parse", "main"), branch=plan.branch)


def notify(merge: Merge) -> Notice:
    return Notice(text=f"Merged {merge.branch} into main at {merge.commit[:12]}.")


@smithers(input=ChangeRequest, concurrency_key=lambda change: change.repo)
def developer_approval(ctx):
    return Workflow(
        Sequence(
            Task(id="plan", output=Plan, run=lambda task: make_plan(ctx.input, task)),
            Task(id="start-agent", output=AgentJob, needs={"plan": "plan"}, run=start_agent),
            Signal(id="agent-done", output=AgentResult, label="the agent's result"),
            Task(id="persist", output=Review, needs={"result": "agent-done"}, run=persist),
            Approval(
                id="approve-change",
                needs={"plan": "plan", "review": "persist", "result": "agent-done"},
                request=review_request,
                on_deny="fail",
            ),
            Task(id="apply", output=Merge, needs={"plan": "plan"}, run=apply, retries=2),
            Task(id="notify", output=Notice, needs={"merge": "apply"}, run=notify),
        ),
        name="developer-approval",
    )
