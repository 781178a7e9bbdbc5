"""Artifacts on the web page (DESIGN §14): a small text artifact in a gate's request is shown
inline, escaped, beside its download link; a binary one is a download only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from smithers.service.auth import create_token
from tests.integration.helpers import write
from tests.service.helpers import opened_store, park, serving
from tests.service.web_helpers import csrf_of

pytestmark = pytest.mark.slow

REVIEW = """
from smithers import Approval, ApprovalRequest, Artifact, Sequence, Task, Workflow, smithers


def files(task):
    diff = task.artifacts.put(
        "--- a/app.py\\n+++ b/app.py\\n+print('<script>alert(1)</script>')\\n",
        name="change.diff",
        media_type="text/x-diff",
    )
    blob = task.artifacts.put(b"\\x00\\x01binary", name="build.bin")
    return [diff, blob]


@smithers
def review(ctx):
    return Workflow(
        Sequence(
            Task(id="files", output=list[Artifact], run=files),
            Approval(
                id="gate",
                needs={"files": "files"},
                request=lambda files: ApprovalRequest(
                    title="Apply?", metadata={"diff": files[0], "build": files[1]}
                ),
            ),
        ),
        name="review",
    )
"""


def test_a_text_artifact_is_shown_inline_and_escaped(tmp_path: Path) -> None:
    """The gate page shows the diff's text inline (a `<script>` in it as text) with its
    download link; the binary artifact is a download link only."""
    store = tmp_path / ".smithers"
    write(tmp_path / "review.py", REVIEW)
    park(tmp_path, store, "review.py:review", ["r"])
    with opened_store(store) as s:
        secret = create_token(s, "alice", "approver", None).secret
    with serving(store, tmp_path) as served, httpx.Client(base_url=served.url) as client:
        csrf = csrf_of(client.get("/signin").text)
        signed = client.post("/signin", data={"csrf": csrf, "token": secret})
        assert signed.status_code == 303, signed.text
        page = client.get("/runs/r/gates/gate").text
    assert "+print(&#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;)" in page
    assert "<script>alert(1)" not in page
    assert page.count('<details class="artifact-text">') == 1  # the diff, not the binary
    assert ">change.diff</a>" in page
    assert ">build.bin</a>" in page
