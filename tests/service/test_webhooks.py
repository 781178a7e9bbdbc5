"""Webhook delivery: signed POSTs of the subscribed events, in order, retried with backoff
against a receiver that fails the first attempts, from a durable cursor; approve/deny links
in ``approval.requested``; ``smithers webhook add/list/remove``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import smithers
from smithers import Approval, ApprovalRequest, Context, Sequence, Task, Workflow
from smithers.runtime.links import verify
from smithers.service.webhooks import SIGNATURE_HEADER, Webhooks
from smithers.store import Store
from smithers.store.records import WebhookRecord
from tests.cli.helpers import invoke
from tests.integration.helpers import HANG_GUARD, wait_for

SECRET = "s3cret"


class Receiver:
    """A local HTTP receiver: answers 500 to the first ``fail`` POSTs, then 200, and keeps
    every accepted body whose HMAC signature it verified."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                good = hmac.compare_digest(self.headers[SIGNATURE_HEADER], f"sha256={expected}")
                receiver.attempts += 1
                ok = good and receiver.attempts > receiver.fail
                receiver.bad_signatures += 0 if good else 1
                if ok:
                    receiver.bodies.append(json.loads(body))
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver failing its first two attempts."""
    made = Receiver(fail=2)
    yield made
    made.server.shutdown()
    made.server.server_close()


@smithers.smithers
def gated(ctx: Context) -> Workflow:
    """A task, then a gate."""
    return Workflow(
        Sequence(
            Task(id="build", output=int, value=1),
            Approval(id="gate", request=ApprovalRequest(title="Ship?")),
        ),
        name="gated",
    )


def _deliver_until(hooks: Webhooks, done: Any) -> None:
    async def loop() -> None:
        async with asyncio.timeout(HANG_GUARD):
            while not done():
                await hooks.tick()
                await asyncio.sleep(0.005)

    asyncio.run(loop())


def test_events_are_posted_signed_in_order_after_retries(store: Store, receiver: Receiver) -> None:
    """Two failed attempts, then every subscribed event once, in order, HMAC verified."""
    hook = WebhookRecord(
        name="chat", url=receiver.url, events=("run.started", "node.finished"), secret=SECRET
    )
    store.add_webhook(hook)
    smithers.run(gated, store=store, run_id="r")
    wanted = [e.seq for e in store.events() if e.type in hook.events]
    hooks = Webhooks(store, base_url=lambda: None, backoff=0.01)
    _deliver_until(hooks, lambda: len(receiver.bodies) == len(wanted))
    assert receiver.attempts == len(wanted) + 2
    assert receiver.bad_signatures == 0
    assert [b["seq"] for b in receiver.bodies] == wanted
    assert store.cursor("webhook:chat") >= wanted[-1]


def test_approval_requested_carries_working_approve_and_deny_links(
    store: Store, receiver: Receiver
) -> None:
    """With a base URL, the payload's links are signed links for the gate."""
    receiver.fail = 0
    store.add_webhook(
        WebhookRecord(name="chat", url=receiver.url, events=("approval.requested",), secret=SECRET)
    )
    smithers.run(gated, store=store, run_id="r")
    hooks = Webhooks(store, base_url=lambda: "http://smithers.test", backoff=0.01)
    _deliver_until(hooks, lambda: len(receiver.bodies) == 1)
    links = receiver.bodies[0]["links"]
    for action in ("approve", "deny"):
        assert links[action].startswith("http://smithers.test/hooks/")
        link = verify(store, links[action].rsplit("/", 1)[1])
        assert (link.run_id, link.node_id, link.action) == ("r", "gate", action)


def test_webhook_commands_add_list_and_remove(tmp_path: Path) -> None:
    """add starts from now, list shows it signed, remove deletes it; bad input is refused."""
    store = str(tmp_path / "store")
    added = invoke(
        "webhook",
        "add",
        "chat",
        "http://x/hook",
        "--events",
        "a.b,c.d",
        "--secret",
        "s",
        "--store",
        store,
    )
    assert added.code == 0, added.err
    assert invoke("webhook", "list", "--json", "--store", store).json() == [
        {
            "name": "chat",
            "url": "http://x/hook",
            "events": ["a.b", "c.d"],
            "signed": True,
            "cursor": 0,
        }
    ]
    bad = invoke("webhook", "add", "x", "ftp://x", "--events", "a", "--store", store)
    assert bad.code == 4
    assert invoke("webhook", "remove", "chat", "--store", store).code == 0
    assert invoke("webhook", "remove", "chat", "--store", store).code == 4
    assert invoke("webhook", "list", "--store", store).out == "No webhooks.\n"


def test_serve_delivers_to_a_webhook_with_links_under_its_url(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A real `smithers serve` POSTs approval.requested, signed, with links to itself."""
    from tests.service.helpers import park, serving, workflows

    receiver.fail = 0
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    added = invoke(
        "webhook", "add", "chat", receiver.url, "--events", "approval.requested",
        "--secret", SECRET, "--store", str(store),
    )  # fmt: skip
    assert added.code == 0, added.err
    park(tmp_path, store, "gate.py:gated", ["r"])
    with serving(store, tmp_path) as served:
        wait_for(lambda: receiver.bodies, "the webhook's POST", proc=served.proc)
        (body,) = receiver.bodies
        assert (body["type"], body["run_id"], body["node_id"]) == (
            "approval.requested",
            "r",
            "gate",
        )
        assert body["links"]["approve"].startswith(f"{served.url}/hooks/")
        with served.client() as client:
            page = client.get(body["links"]["approve"].removeprefix(served.url))
            assert page.status_code == 200
