"""Webhooks (DESIGN §14): the server POSTs each event a webhook subscribes to, as JSON signed
with ``X-Smithers-Signature: sha256=<HMAC-SHA256 of the body>``, in order, retrying with
exponential backoff, from a durable cursor per webhook (``webhook:NAME``): at-least-once.

An event is acknowledged (the cursor moves past it) only after the receiver answered 2xx;
events of other types move the cursor without a POST. With a base URL, the payload of an
``approval.requested`` event carries signed approve/deny links.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import attrs
import msgspec

from smithers.runtime import clock
from smithers.runtime.documents import event_document
from smithers.runtime.links import link_url, sign
from smithers.store.base import Store
from smithers.store.records import EventRecord, WebhookRecord

__all__ = ["SIGNATURE_HEADER", "Webhooks", "payload_of", "signature"]

SIGNATURE_HEADER = "X-Smithers-Signature"
LINKS_FOR = 7 * 86400.0  # seconds a notification's approve/deny links stay valid
_JSON = msgspec.json.Encoder()


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body under secret>``: what a receiver recomputes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload_of(
    store: Store, hook: WebhookRecord, event: EventRecord, base_url: str | None
) -> bytes:
    """The JSON body for one event: the event document, plus ``links`` (approve/deny) for
    ``approval.requested`` when a base URL is known."""
    document: dict[str, Any] = {"webhook": hook.name, **event_document(event)}
    if base_url and event.type == "approval.requested" and event.node_id is not None:
        its = tuple(event.iteration or ())
        who = f"webhook:{hook.name}"
        document["links"] = {
            action: link_url(
                base_url, sign(store, event.run_id, event.node_id, its, action, who, LINKS_FOR)
            )
            for action in ("approve", "deny")
        }
    return _JSON.encode(document)


@attrs.define
class _State:
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None


class Webhooks:
    """Delivers events to every webhook, one event at a time per webhook, in order.

    Args:
        store: The store (webhooks, their cursors, the event log).
        base_url: Public URL for approve/deny links, or a function returning it (set once the
            server is bound).
        backoff: Seconds before the first retry; doubled per failure up to ``max_backoff``.
        timeout: Seconds one POST may take.
    """

    def __init__(
        self,
        store: Store,
        *,
        base_url: Callable[[], str | None],
        poll: float = 0.5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.base_url = base_url
        self.poll = poll
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.stopping = asyncio.Event()
        self.states: dict[str, _State] = {}

    def stop(self) -> None:
        """Finish the POST in flight, then stop."""
        self.stopping.set()

    async def run_forever(self) -> None:
        """Deliver until stopped, looking for new events every ``poll`` seconds."""
        while not self.stopping.is_set():
            busy = await self.tick()
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.poll)

    async def tick(self) -> bool:
        """One pass over every webhook; whether any event was handled."""
        busy = False
        for hook in self.store.webhooks():
            if self.stopping.is_set():
                break
            busy = await self._deliver(hook) or busy
        return busy

    async def _deliver(self, hook: WebhookRecord) -> bool:
        state = self.states.setdefault(hook.name, _State())
        if clock.now() < state.retry_at:
            return False
        name = f"webhook:{hook.name}"
        events = self.store.events(after=self.store.cursor(name), limit=100)
        for event in events:
            if self.stopping.is_set():
                return True
            if event.type in hook.events or "*" in hook.events:
                body = payload_of(self.store, hook, event, self.base_url())
                error = await asyncio.to_thread(self._post, hook, body)
                if error is not None:
                    state.failures += 1
                    state.last_error = error
                    delay = min(self.backoff * 2 ** (state.failures - 1), self.max_backoff)
                    state.retry_at = clock.now() + delay
                    return True
                state.failures, state.last_error = 0, None
            self.store.set_cursor(name, event.seq)
        return bool(events)

    def _post(self, hook: WebhookRecord, body: bytes) -> str | None:
        """POST one body; None on a 2xx answer, else what went wrong."""
        headers = {"Content-Type": "application/json", "User-Agent": "smithers-webhooks"}
        if hook.secret:
            headers[SIGNATURE_HEADER] = signature(hook.secret, body)
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if 200 <= status < 300 else f"HTTP {status}"
