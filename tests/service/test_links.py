"""Signed links against a real server: a GET shows and never decides, a POST decides as the
name the link was issued for; tampered links and links signed before a key rotation are 404,
expired ones 410, used ones 409; signal links take JSON and show their schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from smithers.errors import LinkError, LinkExpiredError
from smithers.runtime.clock import ManualClock, use_clock
from smithers.runtime.links import rotate_key, sign, verify
from tests.integration.helpers import TASK_KIT, child_env, smithers_cli, wait_for, write
from tests.service.helpers import (
    Served,
    finished,
    opened_store,
    park,
    serving,
    status_of,
    workflows,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """One server over parked gate runs and a signal run."""
    folder = tmp_path_factory.mktemp("links")
    store = folder / ".smithers"
    workflows(folder)
    park(folder, store, "gate.py:gated", ["show", "use", "tamper", "old", "late", "deny"])
    park(folder, store, "sig.py:waits", ["sig"])
    with serving(store, folder) as served:
        yield served, folder


def _link(served: Served, folder: Path, run_id: str, *args: str) -> dict[str, str]:
    done = smithers_cli(
        served.store, "--json", "link", run_id, *args, "--base-url", served.url, cwd=folder
    )
    assert done.code == 0, done.err

    return json.loads(done.out)  # type: ignore[no-any-return]


def _path(url: str) -> str:
    return url[url.index("/hooks/") :]


def test_get_shows_an_escaped_page_and_never_decides(linked: tuple[Served, Path]) -> None:
    """GET on an approval link answers a confirmation page (request content escaped) and
    leaves the gate requested."""
    served, folder = linked
    urls = _link(served, folder, "show", "--for", "carol")
    with served.client() as client:
        for _ in range(2):
            page = client.get(_path(urls["approve"]))
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert "<script>" not in page.text
            assert "carol" in page.text
    with opened_store(served.store) as s:
        assert [a.status for a in s.approvals("show") if a.node_id == "gate"] == ["requested"]


def test_post_decides_as_the_link_name_then_is_used(linked: tuple[Served, Path]) -> None:
    """POST decides as the name in the link (the worker finishes the step); a second POST,
    or a GET, of the used link is 409; the matching deny link is 409 too."""
    served, folder = linked
    urls = _link(served, folder, "use", "--for", "carol")
    with served.client() as client:
        response = client.post(_path(urls["approve"]), data={"note": "from chat"})
        assert response.status_code == 200, response.text
        assert response.json()["decision"]["decided_by"] == "carol"
        assert response.json()["decision"]["decision"]["note"] == "from chat"
        again = client.post(_path(urls["approve"]))
        assert again.status_code == 409
        assert again.json()["error"]["type"] == "LinkUsedError"
        assert client.get(_path(urls["approve"])).status_code == 409
        other = client.post(_path(urls["deny"]))
        assert other.status_code == 409
        assert "approved by carol" in other.json()["error"]["message"]
    wait_for(
        lambda: status_of(served.store, "use") == "waiting-approval" and _later(served),
        "use goes on",
    )


def _later(served: Served) -> bool:
    with opened_store(served.store) as s:
        return any(a.node_id == "later" for a in s.approvals("use"))


def test_deny_link_denies(linked: tuple[Served, Path]) -> None:
    """POST on a deny link records a denial by the link's name."""
    served, folder = linked
    urls = _link(served, folder, "deny", "--for", "dave")
    with served.client() as client:
        response = client.post(_path(urls["deny"]))
    assert response.status_code == 200
    assert response.json()["decision"]["status"] == "denied"
    assert response.json()["decision"]["decided_by"] == "dave"


def test_tampered_links_are_404_and_write_nothing(linked: tuple[Served, Path]) -> None:
    """A link with a changed payload or signature, or no signature, answers 404."""
    served, folder = linked
    urls = _link(served, folder, "tamper", "--for", "eve")
    path = _path(urls["approve"])
    body, _, mac = path.removeprefix("/hooks/").partition(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    with served.client() as client:
        for bad in (f"{body}.{flipped}", f"{body[:-2]}xx.{mac}", body, "nonsense", f"{body}."):
            for method in ("GET", "POST"):
                response = client.request(method, f"/hooks/{bad}")
                assert response.status_code == 404, (bad, response.text)
                assert response.json()["error"]["type"] == "LinkError"
    with opened_store(served.store) as s:
        assert [a.status for a in s.approvals("tamper") if a.node_id == "gate"] == ["requested"]


def test_expired_links_are_410(linked: tuple[Served, Path]) -> None:
    """A genuine link past its expiry answers 410 to GET and POST and decides nothing."""
    served, _ = linked
    with opened_store(served.store) as s, use_clock(ManualClock(start=1_000_000.0)):
        token = sign(s, "late", "gate", (), "approve", "frank", 60)
    with served.client() as client:
        for method in ("GET", "POST"):
            response = client.request(method, f"/hooks/{token}")
            assert response.status_code == 410
            assert "expired" in response.json()["error"]["message"]
    assert status_of(served.store, "late") == "waiting-approval"


def test_rotating_the_key_invalidates_earlier_links(linked: tuple[Served, Path]) -> None:
    """After `smithers link --rotate-key` an earlier link is 404; a new one works."""
    served, folder = linked
    urls = _link(served, folder, "old", "--for", "gina")
    done = smithers_cli(served.store, "link", "--rotate-key", cwd=folder)
    assert done.code == 0, done.err
    with served.client() as client:
        assert client.post(_path(urls["approve"])).status_code == 404
        fresh = _link(served, folder, "old", "--for", "gina")
        assert client.post(_path(fresh["approve"])).status_code == 200


def test_signal_link_shows_schema_and_takes_data(linked: tuple[Served, Path]) -> None:
    """GET on a signal link answers the JSON Schema; POST with bad data is 422, with good data
    200 (the worker finishes the run); a second POST is 409."""
    served, folder = linked
    urls = _link(served, folder, "sig", "--node", "report", "--for", "agent-7")
    path = _path(urls["signal"])
    with served.client() as client:
        schema = client.get(path).json()
        assert "Report" in str(schema)
        assert client.post(path, json={"ok": "yes", "items": []}).status_code == 422
        assert client.post(path, json={"ok": True, "items": [3]}).status_code == 200
        finished(served.store, "sig")
        assert client.post(path, json={"ok": True, "items": [3]}).status_code == 409


def test_verify_checks_signature_before_expiry(tmp_path: Path) -> None:
    """An expired link with a bad signature is a bad link (404), never 'expired' (410)."""
    from smithers.store import open_store

    store = open_store(str(tmp_path / "s"))
    try:
        with use_clock(ManualClock(start=1_000_000.0)):
            token = sign(store, "r", "g", (), "approve", "x", 60)
        with pytest.raises(LinkExpiredError, match="expired"):
            verify(store, token)
        with pytest.raises(LinkError, match="No such link"):
            verify(store, token[:-3] + "AAA")
        rotate_key(store)
        with pytest.raises(LinkError, match="No such link"):
            verify(store, token)
    finally:
        store.close()


CALLBACK_WORKFLOW = (
    TASK_KIT
    + """
import msgspec
from smithers import Sequence, Signal, Task, Workflow, smithers


class Result(msgspec.Struct):
    status: str


def dispatch(task):
    with open(os.path.join(HERE, "callback-url"), "w") as out:
        out.write(task.signal_link("result"))
    return "sent"


@smithers
def remote(ctx):
    return Workflow(
        Sequence(
            Task(id="dispatch", output=str, run=dispatch),
            Signal(id="result", output=Result),
            Task(id="done", output=str, value="ok"),
        ),
        name="remote",
    )
"""
)


def test_task_signal_link_lets_a_remote_agent_post_back(tmp_path: Path) -> None:
    """A task gets a callback URL from TaskInfo.signal_link when a base URL is configured;
    POSTing the data there (no token) lets the worker finish the run. Without a base URL the
    call fails, saying how to configure one."""
    store = tmp_path / ".smithers"
    write(tmp_path / "remote.py", CALLBACK_WORKFLOW)
    done = smithers_cli(store, "run", "remote.py", "--run-id", "cb", cwd=tmp_path)
    assert done.code == 1, done.err
    assert "no base URL" in done.out + done.err
    with serving(store, tmp_path) as served:
        env = child_env(SMITHERS_BASE_URL=served.url)
        started = smithers_cli(store, "run", "remote.py", "--run-id", "cb2", cwd=tmp_path, env=env)
        assert started.code == 3, started.err
        url = (tmp_path / "callback-url").read_text()
        assert url.startswith(served.url + "/hooks/")
        with served.client() as client:
            assert client.post(_path(url), json={"status": "green"}).status_code == 200
        finished(store, "cb2")
