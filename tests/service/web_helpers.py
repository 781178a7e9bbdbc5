"""Helpers of the web page tests: a release workflow whose gate request carries a script
tag, a served store with tokens of each role, and signing in a browser context."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from smithers.runtime.loader import load_definition
from smithers.service.auth import create_token
from tests.integration.helpers import write
from tests.service.helpers import SIGNAL_WORKFLOW, Served, opened_store, park, serving

XSS = "<script>window.pwned=1</script>"
RELEASE = f"""
from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


def tree(name, env):
    return Workflow(
        Sequence(
            Task(id="build", output=str, value="v1.4.2"),
            Approval(
                id="approve-deploy",
                request=ApprovalRequest(
                    title="Deploy v1.4.2 to " + env + " {XSS}",
                    summary="Terraform plan: 3 to add, 1 to change. <img src=x onerror=alert(1)>",
                    metadata={{"env": env, "commit": "9f2c1ab", "plan": "3 add, 1 change"}},
                ),
            ),
            Task(id="deploy", output=str, value="deployed"),
            Task(id="notify", output=bool, value=True),
        ),
        name=name,
    )


@smithers
def release(ctx):
    return tree("release", "prod")


@smithers
def hotfix(ctx):
    return tree("hotfix", "staging")


@smithers
def guarded(ctx):
    plan = {{"ref": "res://sha256/" + "ab" * 32, "name": "plan.txt", "size": 12,
            "media_type": "text/plain"}}
    return Workflow(
        Sequence(
            Approval(
                id="approve-deploy",
                request=ApprovalRequest(title="Guarded", metadata={{"plan": plan}}),
                approvers=["alice", "group:release"],
                timeout="2d",
            ),
            Task(id="deploy", output=str, value="deployed"),
        ),
        name="guarded",
    )


def explode():
    raise RuntimeError("disk <full>")


@smithers
def broken(ctx):
    return Workflow(Task(id="boom", output=int, run=explode, retries=1), name="broken")
"""


@attrs.frozen
class Site:
    """A served store with tokens by name (alice approver, victor viewer)."""

    served: Served
    folder: Path
    tokens: dict[str, str]


@contextmanager
def site(
    folder: Path, release: list[str], hotfix: list[str], guarded: tuple[str, ...] = ()
) -> Iterator[Site]:
    """Park ``release``, ``hotfix`` and ``guarded`` runs (and, when any run is guarded, a
    signal run ``sig`` and a failed run ``broken``), make tokens, and serve them."""
    store = folder / ".smithers"
    write(folder / "release.py", RELEASE)
    park(folder, store, "release.py:release", release)
    park(folder, store, "release.py:hotfix", hotfix)
    if guarded:
        park(folder, store, "release.py:guarded", list(guarded))
        write(folder / "sig.py", SIGNAL_WORKFLOW)
        park(folder, store, "sig.py:waits", ["sig"])
        _fail(folder, store, "broken")
    with opened_store(store) as s:
        tokens = {
            "alice": create_token(s, "alice", "approver", None).secret,
            "bob": create_token(s, "bob", "approver", None).secret,
            "victor": create_token(s, "victor", "viewer", None).secret,
        }
    with serving(store, folder) as served:
        yield Site(served, folder, tokens)


def _fail(folder: Path, store: Path, run_id: str) -> None:
    """Run ``release.py:broken`` in this process until it fails."""
    from smithers import run

    definition = load_definition(str(folder / "release.py:broken")).definition
    result = run(definition, store=str(store), run_id=run_id)
    assert result.status == "failed", result


def csrf_of(text: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text
    return found.group(1)


_CLIP = {"x": 0, "y": 0, "width": 820, "height": 1110}  # small PNGs for the README


def screenshot(page: Any, name: str) -> None:
    """Save a PNG for the README when ``SMITHERS_SCREENSHOTS`` names a folder."""
    folder = os.environ.get("SMITHERS_SCREENSHOTS")
    if folder:
        size = page.viewport_size
        page.set_viewport_size({"width": 820, "height": 600})
        page.screenshot(path=str(Path(folder) / name), full_page=True, clip=_CLIP)
        page.set_viewport_size(size)
