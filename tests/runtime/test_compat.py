"""`check_resumable`: resume's compatibility checks made without writing, and a true
`workflow.changed` message when a change is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import smithers
from smithers.errors import OutputTypeChangedError, WorkflowChangedError
from smithers.runtime.compat import check_resumable
from smithers.runtime.loader import load_definition
from smithers.store import KVStore

FLOW = """
from smithers import Approval, ApprovalRequest, Task, Workflow, smithers

@smithers
def flow(ctx):
    return Workflow(
        Task(id="{first}", output={kind}, value={value}),
        Approval(id="gate", request=ApprovalRequest(title="go?")),
        Task(id="after", output=int, value=2),
        name="flow",
    )
"""


def write(path: Path, first: str = "build", kind: str = "int", value: str = "1") -> Any:
    """Write the workflow file and load its definition."""
    path.write_text(FLOW.format(first=first, kind=kind, value=value))
    return load_definition(str(path)).definition


def waiting(store: KVStore, tmp_path: Path) -> tuple[Path, Any]:
    """A run of the file waiting at `gate` with `build` finished."""
    path = tmp_path / "flow.py"
    result = smithers.run(write(path), store=store, run_id="r")
    assert result.status == "waiting-approval"
    run = store.get_run("r")
    assert run is not None
    return path, run


def stored(store: KVStore) -> tuple[Any, ...]:
    """What a read-only check must leave alone."""
    return store.get_run("r"), store.events(run_id="r"), store.approvals("r")


def test_a_renamed_finished_node_is_refused_before_anything_is_written(
    store: KVStore, tmp_path: Path
) -> None:
    """A finished node that no longer mounts refuses, naming it, and writes nothing."""
    path, run = waiting(store, tmp_path)
    renamed = write(path, first="compile")
    before = stored(store)
    with pytest.raises(
        WorkflowChangedError,
        match=r"^The workflow source of run `r` changed and finished nodes no longer match: "
        r"`build` is no longer mounted; restore the source, or resume with "
        r"--accept-workflow-change\.$",
    ):
        check_resumable(store, run, renamed)
    assert stored(store) == before
    check_resumable(store, run, renamed, accept_workflow_change=True)
    assert stored(store) == before


def test_a_changed_output_type_is_refused_before_anything_is_written(
    store: KVStore, tmp_path: Path
) -> None:
    """A committed output that no longer decodes refuses as resume does; nothing written."""
    path, run = waiting(store, tmp_path)
    retyped = write(path, kind="str", value="'x'")
    before = stored(store)
    with pytest.raises(OutputTypeChangedError, match=r"output of `build` no longer decodes"):
        check_resumable(store, run, retyped)
    assert stored(store) == before


def test_a_compatible_change_passes_and_resume_says_so(store: KVStore, tmp_path: Path) -> None:
    """A change that keeps finished nodes passes; the resume's event says they still mount."""
    path, run = waiting(store, tmp_path)
    same = write(path, value="1 + 0")
    check_resumable(store, run, same)
    smithers.approve("r", "gate", store=store)
    assert smithers.resume("r", store=store).status == "finished"
    (event,) = [e for e in store.events(run_id="r") if e.type == "workflow.changed"]
    assert event.data["message"] == (
        "The workflow's source changed since this run started; finished nodes still mount "
        "the same way, so it goes on."
    )


def test_an_accepted_incompatible_change_is_reported_truthfully(
    store: KVStore, tmp_path: Path
) -> None:
    """resume(accept_workflow_change=True) after renaming a finished node names it."""
    path, _ = waiting(store, tmp_path)
    write(path, first="compile")
    smithers.approve("r", "gate", store=store)
    result = smithers.resume("r", store=store, accept_workflow_change=True)
    assert result.status == "finished"
    (event,) = [e for e in store.events(run_id="r") if e.type == "workflow.changed"]
    assert event.data["changed"] == ["`build` is no longer mounted"]
    assert event.data["accepted"] is True
    assert event.data["message"] == (
        "The workflow's source changed since this run started and finished nodes no longer "
        "mount the same way (`build` is no longer mounted); the change was accepted, so it "
        "goes on."
    )
