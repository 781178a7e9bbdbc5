"""Publish a report only if a person approves it; a denial is recorded, not fatal.

The gate's decision is data: the Branch reads it and mounts exactly one side.

    smithers run examples/publish.py
    smithers deny RUN_ID --node approve-release --note "Numbers not final"
"""

import msgspec

from smithers import Approval, ApprovalRequest, Branch, Task, Workflow, smithers


class Report(msgspec.Struct):
    title: str
    body: str


class Published(msgspec.Struct):
    status: str
    url: str


class Rejected(msgspec.Struct):
    status: str
    reason: str | None


@smithers
def publish(ctx):
    approval = ctx.output_maybe("approve-release")
    return Workflow(
        Task(
            id="draft",
            output=Report,
            value=Report(title="Q3 report", body="Revenue up 12%; churn down to 2.1%."),
        ),
        Approval(
            id="approve-release",
            needs={"report": "draft"},
            request=lambda report: ApprovalRequest(
                title=f"Publish {report.title}?", summary=report.body
            ),
            on_deny="continue",
        ),
        approval
        and Branch(
            if_=approval.approved,
            then=Task(
                id="publish",
                output=Published,
                value=Published(status="published", url="https://example.com/q3"),
            ),
            else_=Task(
                id="record-rejection",
                output=Rejected,
                value=Rejected(status="rejected", reason=approval.note),
            ),
        ),
        name="publish",
    )
