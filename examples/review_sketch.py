"""A sketch of the developer approval flow with every outside part stubbed: nothing starts
an agent (you play it with `smithers signal`), the PR is a hash. The real flow, with a
remote agent, artifacts and a git merge, is `developer_approval.py`.

plan -> build on a remote agent -> persist artifacts -> approval -> apply -> notify.

The remote agent is started by a task and reports back through a durable `Signal`: no
process waits while it works. Artifacts are written to disk and passed on as small refs, so
the approval request points at what to review.

    smithers run examples/review_sketch.py --input '{"request": "Bump lmdb to 1.5"}'
    smithers signal RUN_ID --node agent-done \
        --data '{"patch": "...", "log": "ok", "tests_passed": true}'
    smithers approve RUN_ID --node approve-change --note "Looks right"
"""

import hashlib
import os

import msgspec

from smithers import (
    Approval,
    ApprovalRequest,
    Sequence,
    Signal,
    Task,
    TaskInfo,
    Workflow,
    smithers,
)


class ChangeRequest(msgspec.Struct):
    request: str = "Bump lmdb to 1.5"
    repo: str = "example/service"


class Plan(msgspec.Struct):
    change: str
    files: list[str]


class AgentJob(msgspec.Struct):
    job_id: str
    callback: str


class AgentResult(msgspec.Struct):
    patch: str
    log: str
    tests_passed: bool


class Artifacts(msgspec.Struct):
    patch_ref: str
    log_ref: str
    patch_bytes: int


class PullRequest(msgspec.Struct):
    url: str
    number: int


class Notice(msgspec.Struct):
    channel: str
    text: str


def make_plan(request: str) -> Plan:
    return Plan(change=request, files=["pyproject.toml", "requirements.lock"])


def start_agent(plan: Plan, task: TaskInfo) -> AgentJob:
    # A real flow would start the agent on a VM over SSH; the agent calls back with
    # `smithers signal` when it is done, so nothing here stays connected.
    callback = f"smithers signal {task.run_id} --node agent-done --data @result.json"
    return AgentJob(job_id=f"job-{task.idempotency_key}", callback=callback)


def persist(result: AgentResult, task: TaskInfo) -> Artifacts:
    folder = os.path.join(os.environ.get("SMITHERS_ARTIFACTS", ".smithers-artifacts"), task.run_id)
    os.makedirs(folder, exist_ok=True)
    for name, text in (("patch.diff", result.patch), ("agent.log", result.log)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return Artifacts(
        patch_ref=f"res://{task.run_id}/patch.diff",
        log_ref=f"res://{task.run_id}/agent.log",
        patch_bytes=len(result.patch.encode()),
    )


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def review_request(plan: Plan, artifacts: Artifacts, result: AgentResult) -> ApprovalRequest:
    return ApprovalRequest(
        title=f"Apply: {plan.change}?",
        summary=f"{counted(len(plan.files), 'file')}, {counted(artifacts.patch_bytes, 'byte')} "
        "of patch; "
        f"tests {'passed' if result.tests_passed else 'FAILED'}.",
        metadata={"patch": artifacts.patch_ref, "log": artifacts.log_ref},
    )


def open_pull_request(plan: Plan, artifacts: Artifacts, task: TaskInfo) -> PullRequest:
    # The idempotency key is the same on every attempt, so a retried call opens one PR.
    number = int(hashlib.sha256(task.idempotency_key.encode()).hexdigest()[:4], 16)
    return PullRequest(url=f"https://git.example.com/pulls/{number}", number=number)


def notify(pr: PullRequest) -> Notice:
    return Notice(channel="#deploys", text=f"Opened {pr.url}")


@smithers(input=ChangeRequest)
def developer_approval(ctx):
    return Workflow(
        Sequence(
            Task(id="plan", output=Plan, run=lambda: make_plan(ctx.input.request)),
            Task(id="start-agent", output=AgentJob, needs={"plan": "plan"}, run=start_agent),
            Signal(id="agent-done", output=AgentResult, label="remote agent callback"),
            Task(id="persist", output=Artifacts, needs={"result": "agent-done"}, run=persist),
            Approval(
                id="approve-change",
                needs={"plan": "plan", "artifacts": "persist", "result": "agent-done"},
                request=review_request,
                on_deny="fail",
            ),
            Task(
                id="apply",
                output=PullRequest,
                needs={"plan": "plan", "artifacts": "persist"},
                run=open_pull_request,
                retries=2,
                backoff=1.0,
            ),
            Task(id="notify", output=Notice, needs={"pr": "apply"}, run=notify),
        ),
        name="developer-approval",
    )
