"""``smithers webhook add/list/remove``: URLs the server (or ``smithers worker``) POSTs
matching events to, signed, in order, from a durable cursor (DESIGN §14)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from smithers.cli.options import Fail, emit_json, global_options, out, out_lines, settings

if TYPE_CHECKING:
    from smithers.store.records import WebhookRecord

__all__ = ["COMMANDS"]


@click.group("webhook")
def webhook_cmd() -> None:
    """Webhooks: POST each matching event to a URL (``X-Smithers-Signature``)."""


@webhook_cmd.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--events",
    "types",
    required=True,
    metavar="TYPE[,TYPE...]",
    help="Event types to send (approval.requested,run.finished) or * for all.",
)
@click.option("--secret", metavar="S", help="Sign each body with HMAC-SHA256 under S.")
@global_options
def add_cmd(name: str, url: str, types: str, secret: str | None) -> int:
    """Add webhook NAME posting to URL; it receives events written from now on."""
    from datetime import UTC, datetime

    from smithers.store.records import WebhookRecord

    if not url.startswith(("http://", "https://")):
        raise Fail(f"Webhook URL {url!r} is not http(s); pass a URL like https://host/path.")
    events = tuple(t.strip() for t in types.split(",") if t.strip())
    if not events:
        raise Fail(f"--events {types!r} names no event type; pass e.g. approval.requested.")
    hook = WebhookRecord(
        name=name,
        url=url,
        events=events,
        secret=secret,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    store = settings().open(create=True)
    try:
        store.add_webhook(hook)
        store.set_cursor(f"webhook:{name}", store.last_seq())  # from now on
    finally:
        store.close()
    if settings().as_json:
        emit_json(_document(hook))
    else:
        out(f"Webhook {name} posts {', '.join(events)} to {url}.")
    return 0


@webhook_cmd.command("list")
@global_options
def list_cmd() -> int:
    """List every webhook: name, URL, event types, whether it signs, and its cursor."""
    with settings().reading() as store:
        rows = (
            [
                {**_document(h), "cursor": store.cursor(f"webhook:{h.name}")}
                for h in store.webhooks()
            ]
            if store is not None
            else []
        )
    if settings().as_json:
        emit_json(rows)
    else:
        lines = [
            f"{r['name']}  {r['url']}  {','.join(r['events'])}"
            f"{'  signed' if r['signed'] else ''}  after event {r['cursor']}"
            for r in rows
        ]
        out_lines(lines or ["No webhooks."])
    return 0


@webhook_cmd.command("remove")
@click.argument("name")
@global_options
def remove_cmd(name: str) -> int:
    """Remove webhook NAME and its cursor."""
    store = settings().open()
    try:
        existed = store.remove_webhook(name)
    finally:
        store.close()
    if not existed:
        raise Fail(f"No webhook named `{name}`; list them with `smithers webhook list`.")
    out(f"Webhook {name} removed.")
    return 0


def _document(hook: WebhookRecord) -> dict[str, object]:
    return {
        "name": hook.name,
        "url": hook.url,
        "events": list(hook.events),
        "signed": hook.secret is not None,
    }


COMMANDS = [webhook_cmd]
