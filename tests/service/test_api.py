"""The HTTP API of DESIGN §11 against a real uvicorn on 127.0.0.1: every route, its
documents (the same as ``--json``), and every refusal with its status code and error body."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from smithers.runtime.documents import runs_document, status_document, status_view
from smithers.service.auth import create_token
from tests.integration.helpers import has_event, wait_for
from tests.service.helpers import Served, finished, opened_store, park, serving, workflows

pytestmark = pytest.mark.slow

RUNS = ["read", "ok", "again", "later", "denied", "cancel", "bad-body", "output"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    """One server for the module, tokens of every role, parked gate runs and a signal run."""
    folder = tmp_path_factory.mktemp("api")
    store = folder / ".smithers"
    workflows(folder)
    park(folder, store, "gate.py:gated", RUNS)
    park(folder, store, "sig.py:waits", ["sig", "sig-twice"])
    with opened_store(store) as s:
        tokens = {
            role: create_token(s, role, role, None).secret  # type: ignore[arg-type]
            for role in ("viewer", "approver", "agent", "admin")
        }
    with serving(store, folder) as served:
        yield served, tokens


def _error(response: httpx.Response, status: int, kind: str, match: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    assert match in body["error"]["message"]


def test_healthz_needs_no_token(api: tuple[Served, dict[str, str]]) -> None:
    """/healthz answers 200 without credentials."""
    served, _ = api
    with served.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}


ROUTES = [
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/read"),
    ("GET", "/api/v1/runs/read/graph"),
    ("GET", "/api/v1/runs/read/nodes/build/output"),
    ("GET", "/api/v1/approvals"),
    ("POST", "/api/v1/runs/read/nodes/gate/approve"),
    ("POST", "/api/v1/runs/read/nodes/gate/deny"),
    ("POST", "/api/v1/runs/sig/nodes/report/signal"),
    ("POST", "/api/v1/runs/read/cancel"),
    ("GET", "/api/v1/events"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_missing_and_bad_tokens(
    api: tuple[Served, dict[str, str]], method: str, path: str
) -> None:
    """Without a token, or with an unknown one, every route but /healthz answers 401."""
    served, _ = api
    with served.client() as client:
        _error(client.request(method, path), 401, "Unauthorized", "Bearer")
    with served.client("smt_not-a-real-token") as client:
        _error(client.request(method, path), 401, "Unauthorized", "unknown, revoked or expired")


FORBIDDEN = [
    ("viewer", "POST", "/api/v1/runs/read/nodes/gate/approve"),
    ("viewer", "POST", "/api/v1/runs/read/nodes/gate/deny"),
    ("viewer", "POST", "/api/v1/runs/sig/nodes/report/signal"),
    ("viewer", "POST", "/api/v1/runs/read/cancel"),
    ("approver", "POST", "/api/v1/runs/sig/nodes/report/signal"),
    ("approver", "POST", "/api/v1/runs/read/cancel"),
    ("agent", "GET", "/api/v1/runs"),
    ("agent", "GET", "/api/v1/events"),
    ("agent", "POST", "/api/v1/runs/read/nodes/gate/approve"),
]


@pytest.mark.parametrize(("role", "method", "path"), FORBIDDEN)
def test_roles_refuse_what_they_do_not_grant(
    api: tuple[Served, dict[str, str]], role: str, method: str, path: str
) -> None:
    """A token whose role does not grant the action gets 403 and nothing is written."""
    served, tokens = api
    with served.client(tokens[role]) as client:
        _error(client.request(method, path, json={}), 403, "Forbidden", f"role {role}")
    with opened_store(served.store) as s:
        assert s.get_run("read").status == "waiting-approval"  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["viewer", "approver", "agent", "admin"])
def test_metrics_take_any_role(api: tuple[Served, dict[str, str]], role: str) -> None:
    """/metrics answers any role in the Prometheus text format."""
    served, tokens = api
    with served.client(tokens[role]) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'smithers_runs{status="waiting-approval"}' in text
    assert "smithers_gates_waiting" in text
    assert "smithers_gate_oldest_wait_seconds" in text
    assert "smithers_http_requests_total{" in text


def test_reads_serve_the_json_documents(api: tuple[Served, dict[str, str]]) -> None:
    """Runs, status, graph, output and approvals answer 200 with the --json documents."""
    served, tokens = api
    flag = f" --store {served.store}"
    with served.client(tokens["viewer"]) as client:
        runs = client.get("/api/v1/runs", params={"status": "waiting-signal"}).json()
        with opened_store(served.store) as s:
            assert runs == runs_document(s.runs("waiting-signal"), flag)
            expected = status_document(status_view(s, "read"), flag)
        assert client.get("/api/v1/runs/read").json() == expected
        graph = client.get("/api/v1/runs/read/graph").json()
        assert graph["states"]["gate"] == "waiting-approval"
        mermaid = client.get("/api/v1/runs/read/graph", params={"format": "mermaid"}).text
        assert mermaid.startswith("flowchart TD")
        dot = client.get("/api/v1/runs/read/graph", params={"format": "dot"}).text
        assert dot.startswith("digraph")
        assert client.get("/api/v1/runs/output/nodes/build/output").json() == "v1"
        rows = client.get("/api/v1/approvals").json()
        row = next(r for r in rows if r["run_id"] == "read")
        assert row["title"] == "Ship <script>alert(1)</script>?"
        assert row["node_id"] == "gate"


def test_reads_refuse_unknown_and_malformed(api: tuple[Served, dict[str, str]]) -> None:
    """Unknown runs and nodes are 404; a bad status, format or iteration is 400."""
    served, tokens = api
    with served.client(tokens["viewer"]) as client:
        _error(client.get("/api/v1/runs/nope"), 404, "RunNotFoundError", "No run `nope`")
        _error(client.get("/api/v1/runs/nope/graph"), 404, "RunNotFoundError", "nope")
        _error(client.get("/api/v1/runs/read/nodes/ghost/output"), 404, "UnknownNodeError", "ghost")
        _error(client.get("/api/v1/runs", params={"status": "x"}), 400, "MalformedQuery", "'x'")
        response = client.get("/api/v1/runs/read/graph", params={"format": "png"})
        _error(response, 400, "MalformedQuery", "'png'")
        response = client.get("/api/v1/runs/read/nodes/build/output", params={"iteration": "a"})
        _error(response, 400, "MalformedQuery", "")
        _error(client.get("/api/v1/nowhere"), 404, "NotFound", "/api/v1/nowhere")
        _error(client.delete("/api/v1/runs"), 405, "MethodNotAllowed", "DELETE")


def test_approve_records_as_the_token_name_and_the_worker_finishes_the_run(
    api: tuple[Served, dict[str, str]],
) -> None:
    """POST approve answers 200 with the decision by the token's name; the worker resumes the
    run in a child to finished, with no CLI involved."""
    served, tokens = api
    with served.client(tokens["approver"]) as client:
        response = client.post("/api/v1/runs/ok/nodes/gate/approve", json={"note": "lgtm"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"]["decided_by"] == "approver"
    assert body["repeated"] is False
    at = body["decision"]["decided_at"]
    assert body["decision"]["decision"] == {
        "approved": True,
        "note": "lgtm",
        "decided_by": "approver",
        "decided_at": at,
        "votes": [{"by": "approver", "approved": True, "note": "lgtm", "at": at}],
    }
    wait_for(
        lambda: has_event(served.store, "ok", "approval.requested", "later"), "ok reaches later"
    )


def test_identical_decision_repeated_is_200_and_writes_nothing(
    api: tuple[Served, dict[str, str]],
) -> None:
    """The same decision by the same principal answers 200 with the existing record and no new
    event; another decision on the decided gate is 409 naming who decided."""
    served, tokens = api
    path = "/api/v1/runs/again/nodes/gate"
    with served.client(tokens["admin"]) as client:
        first = client.post(f"{path}/approve", json={"note": "once"})
        assert first.status_code == 200
        with opened_store(served.store) as s:
            seq = s.last_seq()
            decided = [e for e in s.events(run_id="again") if e.type == "approval.decided"]
        second = client.post(f"{path}/approve", json={"note": "once"})
        assert second.status_code == 200
        assert second.json()["repeated"] is True
        assert second.json()["decision"] == first.json()["decision"]
        with opened_store(served.store) as s:
            now = [e for e in s.events(run_id="again") if e.type == "approval.decided"]
        assert now == decided
        assert seq > 0
        _error(
            client.post(f"{path}/approve", json={"note": "other"}),
            409,
            "AlreadyDecidedError",
            "already approved by admin",
        )
    with served.client(tokens["approver"]) as client:
        _error(client.post(f"{path}/deny"), 409, "AlreadyDecidedError", "by admin")


def test_decisions_refuse_bad_bodies_and_targets(api: tuple[Served, dict[str, str]]) -> None:
    """400 for a body that is not JSON, 422 naming the field for one that does not validate
    (decided_by is never a body field), 404 for unknown runs and nodes and non-gates, 409 for
    a gate not requested; nothing is written."""
    served, tokens = api
    path = "/api/v1/runs/bad-body/nodes"
    with served.client(tokens["approver"]) as client:
        _error(client.post(f"{path}/gate/approve", content=b"{no"), 400, "MalformedBody", "JSON")
        _error(
            client.post(f"{path}/gate/approve", json={"note": 5}), 422, "ValidationError", "$.note"
        )
        response = client.post(f"{path}/gate/approve", json={"decided_by": "mallory"})
        _error(response, 422, "ValidationError", "decided_by")
        response = client.post(f"{path}/gate/deny", json={"iteration": ["x"]})
        _error(response, 422, "ValidationError", "$.iteration[0]")
        _error(client.post("/api/v1/runs/nope/nodes/gate/approve"), 404, "UnknownRunError", "")
        _error(client.post(f"{path}/ghost/approve"), 404, "UnknownGateError", "ghost")
        _error(client.post(f"{path}/build/approve"), 404, "NotAnApprovalError", "build")
        _error(client.post(f"{path}/later/approve"), 409, "GateNotRequestedError", "later")
    with opened_store(served.store) as s:
        assert not [e for e in s.events(run_id="bad-body") if e.type == "approval.decided"]


def test_deny_records_the_denial(api: tuple[Served, dict[str, str]]) -> None:
    """POST deny records a denial as the token's name; the gate's on_deny fails the run."""
    served, tokens = api
    with served.client(tokens["approver"]) as client:
        response = client.post("/api/v1/runs/denied/nodes/gate/deny", json={"note": "no"})
    assert response.status_code == 200
    assert response.json()["decision"]["status"] == "denied"
    wait_for(lambda: has_event(served.store, "denied", "run.failed"), "denied fails")


def test_signal_validates_in_a_child_and_refuses_a_second(
    api: tuple[Served, dict[str, str]],
) -> None:
    """POST signal: 400 not JSON, 422 data that does not match (naming the path), 404 unknown
    node, 200 delivered (the worker finishes the run), 409 a second delivery."""
    served, tokens = api
    path = "/api/v1/runs/sig/nodes"
    with served.client(tokens["agent"]) as client:
        _error(client.post(f"{path}/report/signal", content=b"{"), 400, "MalformedBody", "JSON")
        response = client.post(f"{path}/report/signal", json={"ok": True, "items": ["a"]})
        _error(response, 422, "SignalDataError", "$.items[0]")
        response = client.post(f"{path}/ghost/signal", json={})
        _error(response, 404, "UnknownNodeError", "ghost")
        response = client.post(f"{path}/report/signal", json={"ok": True, "items": [1]})
        assert response.status_code == 200, response.text
        finished(served.store, "sig")
        response = client.post(
            "/api/v1/runs/sig-twice/nodes/report/signal", json={"ok": True, "items": []}
        )
        assert response.status_code == 200
        response = client.post(
            "/api/v1/runs/sig-twice/nodes/report/signal", json={"ok": False, "items": []}
        )
        assert response.status_code == 409, response.text


def test_cancel_needs_admin_and_cancels(api: tuple[Served, dict[str, str]]) -> None:
    """POST cancel by an admin cancels the run (200); an unknown run is 404."""
    served, tokens = api
    with served.client(tokens["admin"]) as client:
        response = client.post("/api/v1/runs/cancel/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        _error(client.post("/api/v1/runs/nope/cancel"), 404, "RunNotFoundError", "nope")


def _sse(client: httpx.Client, count: int, **kwargs: object) -> list[dict[str, str]]:
    """The first ``count`` events of the stream."""
    found: list[dict[str, str]] = []
    with client.stream("GET", "/api/v1/events", **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    found.append(current)
                    current = {}
                if len(found) >= count:
                    break
                continue
            key, _, value = line.partition(": ")
            current[key] = value
    return found


def test_events_resume_from_last_event_id_missing_nothing(
    api: tuple[Served, dict[str, str]],
) -> None:
    """The SSE stream carries id = seq, event = type, data = the event document; reconnecting
    with Last-Event-ID (which wins over after) continues at the next seq with no gap."""
    served, tokens = api
    with opened_store(served.store) as s:
        log = s.events(limit=12)
    with served.client(tokens["viewer"]) as client:
        first = _sse(client, 6, params={"after": 0})
        assert [int(e["id"]) for e in first] == [e.seq for e in log[:6]]
        assert [e["event"] for e in first] == [e.type for e in log[:6]]
        last = first[-1]["id"]
        rest = _sse(client, 6, params={"after": 1}, headers={"Last-Event-ID": last})
        assert [int(e["id"]) for e in rest] == [e.seq for e in log[6:12]]
        one = _sse(client, 1, params={"run_id": "read"})
        assert '"run_id":"read"' in one[0]["data"]
        response = client.get("/api/v1/events", headers={"Last-Event-ID": "x"})
        _error(response, 400, "MalformedQuery", "'x'")
        _error(client.get("/api/v1/events", params={"run_id": "nope"}), 404, "RunNotFoundError")


def test_a_reconnecting_follower_misses_nothing_written_meanwhile(
    api: tuple[Served, dict[str, str]],
) -> None:
    """Events appended while a follower was away (a decision and the worker's resume) all
    arrive after it reconnects with Last-Event-ID, contiguous and in log order."""
    served, tokens = api
    with served.client(tokens["admin"]) as client:
        with opened_store(served.store) as s:
            left_at = s.last_seq()
        response = client.post("/api/v1/runs/output/nodes/gate/approve", json={})
        assert response.status_code == 200
        wait_for(lambda: has_event(served.store, "output", "approval.requested", "later"), "resume")
        with opened_store(served.store) as s:
            missed = s.events(after=left_at)
        got = _sse(client, len(missed), headers={"Last-Event-ID": str(left_at)})
    assert [int(e["id"]) for e in got] == [e.seq for e in missed]
    assert [int(e["id"]) for e in got] == list(range(left_at + 1, left_at + 1 + len(missed)))
