"""task.artifacts.put: bytes stored once with the run, an `Artifact` as the task's output and
in an approval request's metadata, read back checked by the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import smithers
from smithers import (
    Approval,
    ApprovalRequest,
    Artifact,
    Context,
    Sequence,
    Task,
    TaskInfo,
    Workflow,
)
from smithers.errors import InputError
from smithers.runtime.artifacts import read_artifact
from smithers.store import Store
from tests.runtime.helpers import run

DIFF = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"


def _flow(log_file: Path) -> smithers.WorkflowDefinition:
    def build(task: TaskInfo) -> Artifact:
        task.artifacts.put(log_file, name="test.log")
        return task.artifacts.put(DIFF, name="change.diff")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        diff = ctx.output_maybe("build")
        return Workflow(
            Sequence(
                Task(id="build", output=Artifact, run=build),
                diff
                and Approval(
                    id="review", request=ApprovalRequest(title="Apply?", metadata={"diff": diff})
                ),
            ),
            name="flow",
        )

    return flow


def test_an_artifact_is_a_task_output_and_request_metadata(store: Store, tmp_path: Path) -> None:
    """The task's output is the Artifact; the bytes read back by ref; the gate carries the ref."""
    log = tmp_path / "test.log"
    log.write_bytes(b"2 passed\n")
    result = run(_flow(log), store)
    assert result.status == "waiting-approval"
    sha = hashlib.sha256(DIFF.encode()).hexdigest()
    output = result.outputs["build"]
    assert output == Artifact(
        ref=f"res://sha256/{sha}", name="change.diff", size=len(DIFF), media_type="text/x-diff"
    )
    assert read_artifact(store, output.ref) == DIFF.encode()
    names = {(a.name, a.media_type) for a in store.run_artifacts("r")}
    assert names == {("change.diff", "text/x-diff"), ("test.log", "text/plain")}
    (gate,) = store.approvals("r")
    assert gate.request is not None
    assert gate.request["metadata"]["diff"]["ref"] == output.ref


def test_artifacts_outside_a_run_and_unknown_refs_are_refused(store: Store) -> None:
    """put without a run, a malformed ref and an unknown digest are one-sentence errors."""
    info = TaskInfo(run_id="r", node_id="t", iteration=(), attempt=1, idempotency_key="k")
    with pytest.raises(InputError, match="outside a run"):
        info.artifacts.put(b"x", name="x")
    with pytest.raises(InputError, match="is not an artifact digest"):
        read_artifact(store, "res://sha256/nope")
    with pytest.raises(InputError, match=r"No artifact res://sha256/0+ in the store"):
        read_artifact(store, "0" * 64)
