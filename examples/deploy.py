"""Deploy behind an approval gate: build, ask a person, then record what they decided.

smithers run examples/deploy.py --input '{"version": "1.4.2"}'
smithers approve RUN_ID --node approve-deploy --note "Ship it"
"""

import msgspec

from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


class DeployInput(msgspec.Struct):
    version: str = "1.4.2"


class Build(msgspec.Struct):
    version: str
    plan: str


class Published(msgspec.Struct):
    status: str


def build(version: str) -> Build:
    return Build(version=version, plan=f"Roll {version} out to 3 regions, canary first.")


@smithers(input=DeployInput)
def deploy(ctx):
    decision = ctx.output_maybe("approve-deploy")
    return Workflow(
        Sequence(
            Task(id="build", output=Build, run=lambda: build(ctx.input.version)),
            Approval(
                id="approve-deploy",
                needs={"build": "build"},
                request=lambda build: ApprovalRequest(
                    title=f"Deploy {build.version}?",
                    summary=build.plan,
                    metadata={"risk": "medium"},
                ),
                on_deny="continue",
            ),
            decision
            and Task(
                id="record",
                output=Published,
                value=Published(status="approved" if decision.approved else "rejected"),
            ),
        ),
        name="deploy",
    )
