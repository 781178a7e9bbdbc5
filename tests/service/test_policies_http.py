"""Approval policies over HTTP: a decision the gate's policy does not allow is 403 with the
message naming who may decide, and only `approval.refused` is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from smithers.service.auth import create_token
from tests.integration.helpers import write
from tests.service.helpers import opened_store, park, serving

pytestmark = pytest.mark.slow

POLICY_GATE = """
from smithers import Approval, ApprovalRequest, Task, Workflow, smithers


@smithers
def guarded(ctx):
    return Workflow(
        Approval(
            id="gate",
            request=ApprovalRequest(title="Release?"),
            approvers=["release-lead"],
        ),
        Task(id="after", output=int, value=1),
        name="guarded",
    )
"""


def test_a_decider_the_policy_does_not_allow_gets_403(tmp_path: Path) -> None:
    """An approver token whose name is not in the gate's approvers is refused with 403 naming
    who may decide; the gate stays requested and only `approval.refused` is appended; the
    allowed name then decides with 200."""
    store = tmp_path / ".smithers"
    write(tmp_path / "guarded.py", POLICY_GATE)
    park(tmp_path, store, "guarded.py:guarded", ["p"])
    with opened_store(store) as s:
        outsider = create_token(s, "mallory", "approver", None).secret
        lead = create_token(s, "release-lead", "approver", None).secret
        before = s.last_seq()
    with serving(store, tmp_path) as served:
        with served.client(outsider) as client:
            refused = client.post("/api/v1/runs/p/nodes/gate/approve", json={"note": "me?"})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["type"] == "ApprovalRefusedError"
        assert "release-lead" in error["message"]
        with opened_store(store) as s:
            added = [e.type for e in s.events(after=before)]
            (record,) = s.approvals("p")
        assert added == ["approval.refused"]
        assert record.status == "requested"
        with served.client(lead) as client:
            allowed = client.post("/api/v1/runs/p/nodes/gate/approve", json={"note": "go"})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["decision"]["decided_by"] == "release-lead"
