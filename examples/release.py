"""The release gate of the README's policies section: group `release`, no self-approval,
2 approvals, a reminder every hour, `group:leads` may decide after 2 h, denied after 4 h."""

from smithers import Approval, ApprovalRequest, Escalation, Task, Workflow, smithers


@smithers
def release(ctx):
    decision = ctx.output_maybe("approve-release")
    return Workflow(
        Task(id="build", output=str, value="1.5.0"),
        Approval(
            id="approve-release",
            needs={"version": "build"},
            request=lambda version: ApprovalRequest(title=f"Release {version}?"),
            approvers=["group:release"],
            forbid_self=True,
            quorum=2,
            timeout="4h",
            on_timeout="deny",
            remind_every="1h",
            escalate=[Escalation(after="2h", approvers=["group:leads"])],
            on_deny="continue",
        ),
        decision is not None
        and Task(id="publish", output=str, value="published" if decision.approved else "held"),
        name="release",
    )
