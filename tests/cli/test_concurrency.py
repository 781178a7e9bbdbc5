"""``smithers run`` on a busy concurrency key: queued is exit 3 naming the run ahead; a
refusal is exit 4 with one sentence and nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import invoke, one_error, write

SOURCE = """
import msgspec
from smithers import Approval, ApprovalRequest, Workflow, smithers


class Change(msgspec.Struct):
    repo: str


@smithers(input=Change, concurrency_key=lambda c: c.repo, on_limit="{on_limit}")
def change(ctx):
    return Workflow(Approval(id="gate", request=ApprovalRequest(title="Go?")), name="change")
"""


def test_run_on_a_busy_key_is_queued_with_exit_3(tmp_path: Path) -> None:
    """The second run prints that it is queued behind the first and exits 3."""
    flow = write(tmp_path, "flow.py", SOURCE.replace("{on_limit}", "queue"))
    store = str(tmp_path / "store")
    first = invoke("run", str(flow), "--run-id", "a", "--input", '{"repo": "x"}', "--store", store)
    assert first.code == 3, first.err
    second = invoke("run", str(flow), "--run-id", "b", "--input", '{"repo": "x"}', "--store", store)
    assert second.code == 3, second.err
    assert "Queued behind run a" in second.out
    assert "Run b is queued." in second.out
    assert invoke("status", "b", "--store", store, "--json").json()["run"]["status"] == "queued"


def test_run_on_a_full_key_with_reject_exits_4_and_writes_nothing(tmp_path: Path) -> None:
    """on_limit="reject": exit 4, ConcurrencyLimitError's sentence, no run b."""
    flow = write(tmp_path, "flow.py", SOURCE.replace("{on_limit}", "reject"))
    store = str(tmp_path / "store")
    invoke("run", str(flow), "--run-id", "a", "--input", '{"repo": "x"}', "--store", store)
    refused = invoke(
        "run", str(flow), "--run-id", "b", "--input", '{"repo": "x"}', "--store", store
    )
    assert "concurrency key 'x' already has 1 active run(s)" in one_error(refused)
    assert invoke("status", "b", "--store", store).code == 4
