"""The web page's server side against a real ``smithers serve``: the session cookie's
flags and signature, CSRF on every form, GET never changing state, viewers refused, a
repeated submit recorded once, escaping, and the SVG graph."""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

import httpx
import pytest
from hypothesis import given

from smithers.compiler import compile_tree
from smithers.compiler.graph import Edge, Graph, Node
from smithers.service.svg import graph_svg
from tests.compiler.strategies import TreeSpec, trees
from tests.service.helpers import opened_store
from tests.service.web_helpers import Site, csrf_of, site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server over parked release runs."""
    runs = ["csrf", "get", "viewer", "twice", "other"]
    with site(tmp_path_factory.mktemp("webserver"), runs, [], ("guarded",)) as served:
        yield served


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every client a test opened."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def browser(web: Site, name: str | None = "alice") -> httpx.Client:
    """A cookie-keeping client, signed in as ``name`` through the form (None: not signed in)."""
    client = httpx.Client(base_url=web.served.url, timeout=60)
    _OPEN.append(client)
    if name is not None:
        csrf = csrf_of(client.get("/signin").text)
        response = client.post("/signin", data={"csrf": csrf, "token": web.tokens[name]})
        assert response.status_code == 303, response.text
    return client


def decided(web: Site, run_id: str) -> int:
    """How many approval.decided events the run has."""
    with opened_store(web.served.store) as s:
        return sum(1 for e in s.events(run_id=run_id) if e.type == "approval.decided")


def test_the_session_cookie_is_http_only_strict_and_signed(web: Site) -> None:
    """Sign-in sets an HttpOnly, SameSite=Strict cookie; a tampered cookie is no session."""
    client = browser(web, None)
    csrf = csrf_of(client.get("/signin").text)
    response = client.post("/signin", data={"csrf": csrf, "token": web.tokens["alice"]})
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("smithers_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert client.get("/").status_code == 200
    value = client.cookies["smithers_session"]
    client.cookies.set("smithers_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/").status_code == 303
    assert client.get("/").headers["location"].startswith("/signin")


def test_a_bad_token_does_not_sign_in(web: Site) -> None:
    """A wrong token answers 401 with the form again and sets no session."""
    client = browser(web, None)
    csrf = csrf_of(client.get("/signin").text)
    response = client.post("/signin", data={"csrf": csrf, "token": "smt_nope"})
    assert response.status_code == 401
    assert "unknown, revoked or expired" in response.text
    assert "smithers_session" not in client.cookies


def test_sign_in_only_redirects_to_a_path_on_this_site(web: Site) -> None:
    """``next`` pointing at another site falls back to the inbox."""
    client = browser(web, None)
    csrf = csrf_of(client.get("/signin").text)
    for target in ("https://evil.example/", "//evil.example/x"):
        data = {"csrf": csrf, "token": web.tokens["alice"], "next": target}
        assert client.post("/signin", data=data).headers["location"] == "/"


@pytest.mark.parametrize("csrf", [None, "forged", "other-browser"])
def test_every_form_needs_this_browsers_csrf_token(web: Site, csrf: str | None) -> None:
    """A decision, sign-in or sign-out without the browser's CSRF token is 403, and nothing
    is recorded."""
    client = browser(web)
    if csrf == "other-browser":
        csrf = csrf_of(browser(web, None).get("/signin").text)
    data = {"action": "approve", "note": ""} | ({"csrf": csrf} if csrf else {})
    response = client.post("/runs/csrf/gates/approve-deploy/decide", data=data)
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert client.post("/signout", data={"csrf": csrf or ""}).status_code == 403
    assert decided(web, "csrf") == 0


def test_get_never_changes_state(web: Site) -> None:
    """Every page is a GET that writes nothing; the decide route refuses GET."""
    client = browser(web)
    with opened_store(web.served.store) as s:
        before = s.last_seq()
    for path in ("/", "/runs", "/runs/get", "/runs/get/gates/approve-deploy"):
        assert client.get(path).status_code == 200
    assert client.get("/runs/get/gates/approve-deploy/decide").status_code == 405
    with opened_store(web.served.store) as s:
        assert s.last_seq() == before


def test_a_viewer_gets_no_button_and_a_403(web: Site) -> None:
    """A viewer's gate page has no decision form, and its POST is 403 (nothing written)."""
    client = browser(web, "victor")
    page = client.get("/runs/viewer/gates/approve-deploy").text
    assert 'value="approve"' not in page
    data = {"csrf": csrf_of(page), "action": "approve"}
    assert client.post("/runs/viewer/gates/approve-deploy/decide", data=data).status_code == 403
    assert decided(web, "viewer") == 0


def test_a_repeated_submit_records_one_decision(web: Site) -> None:
    """Posting the same approval twice records it once; a different decision after it is 409."""
    client = browser(web)
    csrf = csrf_of(client.get("/runs/twice/gates/approve-deploy").text)
    data = {"csrf": csrf, "action": "approve", "note": "once"}
    for _ in range(2):
        response = client.post("/runs/twice/gates/approve-deploy/decide", data=data)
        assert response.status_code == 303
    assert decided(web, "twice") == 1
    bob = browser(web, "bob")
    data = {"csrf": csrf_of(bob.get("/").text), "action": "deny", "confirmed": "yes"}
    response = bob.post("/runs/twice/gates/approve-deploy/decide", data=data)
    assert response.status_code == 409
    assert "alice" in response.text
    assert decided(web, "twice") == 1


def test_the_session_reads_the_api_but_never_writes_it(web: Site) -> None:
    """The session cookie authorizes API GETs (the event stream) but no API POST."""
    client = browser(web)
    assert client.get("/api/v1/approvals").status_code == 200
    response = client.post("/api/v1/runs/other/nodes/approve-deploy/approve", json={})
    assert response.status_code == 401
    assert decided(web, "other") == 0


def test_request_content_is_escaped_and_pages_send_a_strict_policy(web: Site) -> None:
    """A <script> in a title is sent as text, and pages forbid inline scripts."""
    response = browser(web).get("/runs/get/gates/approve-deploy")
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in response.text
    assert "<script>window" not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_the_inbox_shows_a_policy_and_links_an_artifact(web: Site) -> None:
    """A gate with approvers and a timeout shows its deadline and approvers; an Artifact in
    its metadata is a download link to the artifacts route."""
    page = browser(web).get("/?workflow=guarded").text
    assert "Deadline" in page
    assert "alice, group:release" in page
    assert f'href="/api/v1/artifacts/{"ab" * 32}"' in page
    assert ">plan.txt</a>" in page


def test_the_run_page_shows_a_waiting_signals_schema(web: Site) -> None:
    """The run page of a run waiting on a Signal shows the JSON Schema of its data."""
    page = browser(web).get("/runs/sig").text
    assert "Waiting signals" in page
    assert '"Report"' in page
    assert '"items"' in page


def test_the_runs_list_filters_by_status_and_a_run_shows_its_errors(web: Site) -> None:
    """/runs?status=failed lists only failed runs; the failed run's page shows each attempt
    with its error, escaped; an unknown status is 400."""
    client = browser(web)
    listed = client.get("/runs?status=failed").text
    assert 'href="/runs/broken"' in listed
    assert 'href="/runs/sig"' not in listed
    page = client.get("/runs/broken").text
    assert page.count("disk &lt;full&gt;") >= 2  # both attempts
    assert 'id="run-status">failed' in page
    assert client.get("/runs?status=nope").status_code == 400


def test_the_svg_draws_kinds_distinctly_and_escapes_labels() -> None:
    """Gates, signals, timers and tasks get distinct shapes, the fill follows the state, and
    ids are escaped."""
    nodes = tuple(
        Node(id=i, kind=k, path=f"W/{i}", label=i, output_type="str", parent="W", index=n)  # type: ignore[arg-type]
        for n, (i, k) in enumerate(
            [("t<x>", "task"), ("g", "approval"), ("s", "signal"), ("z", "timer")]
        )
    )
    edges = (Edge(source="t<x>", target="g", kind="sequence"),)
    graph = Graph(workflow="w", root="W", nodes=nodes, groups=(), edges=edges)
    svg = graph_svg(graph, {"t<x>": "finished", "g": "waiting-approval"}, "r")
    assert "t&lt;x&gt;" in svg
    assert "<x>" not in svg
    assert svg.count("<polygon") == 2  # the gate's hexagon and the signal's parallelogram
    assert 'data-kind="timer"' in svg
    assert 'href="/runs/r/gates/g"' in svg
    assert 'fill="#a8e0b8"' in svg


@given(trees())
def test_the_svg_draws_every_node_of_any_graph_once(spec: TreeSpec) -> None:
    """Any compiled tree (loops, branches, needs) draws each node exactly once."""
    graph = compile_tree(spec.element())
    svg = graph_svg(graph, {}, "r")
    for node in graph.nodes:
        assert svg.count(f'data-node="{escape(node.id)}"') == 1
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
