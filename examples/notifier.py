"""A chat notifier: turns smithers events into chat-style messages and posts them to a chat
webhook, from a durable consumer cursor, so a restart loses and reorders nothing.

Two programs in one file:

    python examples/notifier.py receive --port 8500 --out chat.log   # a tiny chat server
    python examples/notifier.py run --to http://127.0.0.1:8500/ --base-url http://127.0.0.1:8400

`run` reads events after the cursor of consumer ``notifier`` (``store.cursor``), posts one
message per interesting event and moves the cursor (``store.set_cursor``) only after the chat
server answered 2xx: at-least-once, in order. With a base URL, a gate's message carries
signed approve and deny links. The store is ``--store``, ``$SMITHERS_STORE`` or ``.smithers``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from smithers import open_store
from smithers.runtime.links import link_url, sign

CONSUMER = "notifier"


def message(event: Any, store: Any, base_url: str | None) -> str | None:
    """The chat text for an event, or None for events nobody needs to hear about."""
    run, node = event.run_id, event.node_id
    if event.type == "approval.requested":
        request = event.data.get("request") or {}
        text = f"Run {run} needs a decision at `{node}`: {request.get('title', '')}"
        for name, value in (request.get("metadata") or {}).items():
            if isinstance(value, dict) and "ref" in value:  # an Artifact
                text += f"\n  {name}: {value['name']} ({value['ref']})"
        if base_url:
            links = {
                action: link_url(base_url, sign(store, run, node, None, action, "chat", 86400))
                for action in ("approve", "deny")
            }
            text += f"\n  approve: {links['approve']}\n  deny:    {links['deny']}"
        return text
    if event.type == "approval.decided":
        decision = event.data.get("decision") or {}
        verb = "approved" if decision.get("approved") else "denied"
        return f"Run {run}: `{node}` {verb} by {decision.get('decided_by')}"
    if event.type in ("run.queued", "run.started", "run.finished", "run.failed"):
        return f"Run {run} {event.type.removeprefix('run.')}."
    if event.type == "signal.received":
        return f"Run {run}: `{node}` received its data."
    return None


def post(url: str, payload: dict[str, Any]) -> None:
    """POST JSON; raises unless the answer is 2xx."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"chat answered {response.status}")


def run(store_path: str, to: str, base_url: str | None, poll: float) -> None:
    """Follow the event log from the cursor forever, posting messages in order."""
    store = open_store(store_path)
    try:
        while True:
            events = store.events(after=store.cursor(CONSUMER), limit=100)
            for event in events:
                text = message(event, store, base_url)
                if text is not None:
                    while True:
                        try:
                            post(to, {"seq": event.seq, "text": text})
                            break
                        except OSError as exc:  # the chat is down: retry, never skip
                            print(f"chat unreachable ({exc}); retrying", file=sys.stderr)
                            time.sleep(1.0)
                store.set_cursor(CONSUMER, event.seq)
            if not events:
                time.sleep(poll)
    finally:
        store.close()


def receive(port: int, out: str) -> None:
    """The chat server: prints and appends every message (one JSON line each) to ``out``."""

    class Chat(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(body) + "\n")
            print(f"[chat] {body['text']}", flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Chat)
    print(f"chat listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


def main() -> None:
    """Parse the arguments and start one of the two programs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rcv = sub.add_parser("receive", help="run the tiny chat server")
    rcv.add_argument("--port", type=int, default=8500)
    rcv.add_argument("--out", default="chat.log")
    follow = sub.add_parser("run", help="post events to the chat")
    follow.add_argument("--to", required=True, help="the chat server's URL")
    follow.add_argument("--store", default=os.environ.get("SMITHERS_STORE", ".smithers"))
    follow.add_argument("--base-url", default=os.environ.get("SMITHERS_BASE_URL"))
    follow.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    if args.command == "receive":
        receive(args.port, args.out)
    else:
        run(args.store, args.to, args.base_url, args.poll)


if __name__ == "__main__":
    main()
