"""``smithers serve``, ``worker``, ``tick``, ``token`` and ``link``: the service, its worker
alone or for one pass, API tokens, and signed links."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from smithers.cli.options import Fail, emit_json, execute, global_options, out, settings

if TYPE_CHECKING:
    from smithers.runtime.links import Action

__all__ = ["COMMANDS"]

_WORKERS = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="The most runs resumed at once (each in its own process).",
)
_BASE_URL = click.option(
    "--base-url",
    metavar="URL",
    envvar="SMITHERS_BASE_URL",
    help="The service's public URL, for signed links (default: where it listens).",
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", type=click.IntRange(min=0), default=8400, show_default=True)
@_WORKERS
@_BASE_URL
@global_options
def serve_cmd(host: str, port: int, workers: int, base_url: str | None) -> int:
    """Serve the HTTP API and resume runs as decisions and signals arrive."""
    from smithers.service.server import is_loopback, serve

    store = settings().open(create=True)
    try:
        if not is_loopback(host) and not store.tokens():
            raise Fail(
                f"Refusing to listen on {host} while the store has no token (anyone who can "
                "reach it could decide gates); create one with `smithers token create NAME`, "
                "or listen on 127.0.0.1."
            )

        def ready(url: str) -> None:
            click.echo(f"smithers serve: listening on {url} (store {store.location})", err=True)

        execute(
            serve(store, host=host, port=port, workers=workers, base_url=base_url, on_ready=ready)
        )
        click.echo("smithers serve: stopped.", err=True)
        return 0
    finally:
        store.close()


def _work(workers: int, base_url: str | None, *, once: bool) -> int:
    from smithers.service.server import run_worker

    store = settings().open(create=True)
    try:

        def ready() -> None:
            if not once:
                click.echo(f"smithers worker: resuming runs of {store.location}", err=True)

        started = execute(
            run_worker(store, workers=workers, base_url=base_url, once=once, on_ready=ready)
        )
    finally:
        store.close()
    if once:
        if settings().as_json:
            emit_json({"resumed": started})
        else:
            out(f"Resumed {started} run(s).")
    return 0


@click.command("worker")
@_WORKERS
@_BASE_URL
@global_options
def worker_cmd(workers: int, base_url: str | None) -> int:
    """Resume runs as decisions, signals and wake-ups arrive (no HTTP), until stopped."""
    return _work(workers, base_url, once=False)


@click.command("tick")
@_WORKERS
@_BASE_URL
@global_options
def tick_cmd(workers: int, base_url: str | None) -> int:
    """One worker pass: resume every run with news or a due wake-up, then exit (for cron)."""
    return _work(workers, base_url, once=True)


@click.group("token")
def token_group() -> None:
    """API tokens for `smithers serve` (the secret is shown once)."""


@token_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "approver", "agent", "admin"]),
    default="approver",
    show_default=True,
)
@click.option("--expires", metavar="DURATION", help="e.g. 30d; default: never.")
@global_options
def token_create(name: str, role: Any, expires: str | None) -> int:
    """Make a token; its secret is printed once and only its hash is kept."""
    from smithers.runtime.links import parse_duration
    from smithers.service.auth import create_token

    expires_in = parse_duration(expires) if expires else None
    store = settings().open(create=True)
    try:
        created = create_token(store, name, role, expires_in)
    finally:
        store.close()
    if settings().as_json:
        emit_json({"name": name, "role": role, "token": created.secret})
    else:
        out(created.secret)
        click.echo(
            f"Token `{name}` ({role}) created; this is the only time its secret is shown.",
            err=True,
        )
    return 0


@token_group.command("list")
@global_options
def token_list() -> int:
    """List tokens (names, roles, expiry; never secrets)."""
    from smithers.runtime.clock import format_iso

    with settings().reading() as store:
        records = store.tokens() if store is not None else []
    rows = [
        {
            "name": r.name,
            "role": r.role,
            "created_at": r.created_at,
            "expires_at": format_iso(r.expires_at) if r.expires_at is not None else None,
        }
        for r in records
    ]
    if settings().as_json:
        emit_json(rows)
    elif not rows:
        out("No tokens.")
    else:
        for row in rows:
            out(
                f"{row['name']}  {row['role']}  created {row['created_at']}"
                + (f"  expires {row['expires_at']}" if row["expires_at"] else "")
            )
    return 0


@token_group.command("revoke")
@click.argument("name")
@global_options
def token_revoke(name: str) -> int:
    """Revoke a token at once."""
    store = settings().open()
    try:
        if not store.revoke_token(name):
            raise Fail(f"No token named `{name}`; list them with `smithers token list`.")
    finally:
        store.close()
    out(f"Revoked token `{name}`.")
    return 0


@click.command("link")
@click.argument("run_id", required=False)
@click.option("--node", metavar="NODE", help="The gate or signal (optional with one requested).")
@click.option("--for", "for_", metavar="NAME", help="Who acts through the link (the decider).")
@click.option("--expires", metavar="DURATION", default="7d", show_default=True)
@click.option(
    "--rotate-key", is_flag=True, help="Make a new signing key: every link stops working."
)
@_BASE_URL
@global_options
def link_cmd(
    run_id: str | None,
    node: str | None,
    for_: str | None,
    expires: str,
    rotate_key: bool,
    base_url: str | None,
) -> int:
    """Print signed approve/deny URLs for a gate (or a signal URL for a Signal)."""
    from smithers.runtime.decisions import decider
    from smithers.runtime.links import link_url, parse_duration, sign
    from smithers.runtime.links import rotate_key as rotate

    if rotate_key:
        if run_id is not None:
            raise Fail("--rotate-key takes no RUN_ID; rotate first, then issue new links.")
        store = settings().open(create=True)
        try:
            rotate(store)
        finally:
            store.close()
        out("Rotated the link key; every link issued before no longer works.")
        return 0
    if run_id is None:
        raise Fail("Missing argument 'RUN_ID' (see `smithers link --help`).")
    seconds = parse_duration(expires)
    base = base_url or "http://127.0.0.1:8400"
    who = decider(for_)
    store = settings().open()
    try:
        target = _link_target(store, run_id, node)
        kind, node_id, its = target
        actions: list[Action] = ["approve", "deny"] if kind == "approval" else ["signal"]
        urls = {
            action: link_url(base, sign(store, run_id, node_id, its, action, who, seconds))
            for action in actions
        }
    finally:
        store.close()
    if settings().as_json:
        emit_json({"run_id": run_id, "node_id": node_id, "for": who, **urls})
    else:
        for action, url in urls.items():
            out(f"{action}: {url}")
    return 0


def _link_target(store: Any, run_id: str, node: str | None) -> tuple[str, str, Any]:
    """(kind, node id, iteration) of the gate or signal a link is for."""
    from smithers.errors import UnknownNodeError
    from smithers.runtime.decisions import find_gate
    from smithers.runtime.results import last_graph
    from smithers.store.base import need_run

    run = need_run(store, run_id)
    graph = last_graph(store, run)
    found = graph.by_id.get(node) if graph is not None and node is not None else None
    if found is not None and found.kind == "signal":
        return "signal", found.id, None
    if (
        found is None
        and node is not None
        and not any(a.node_id == node for a in store.approvals(run_id))
    ):
        raise UnknownNodeError(f"Run `{run_id}` has no gate or signal `{node}`.")
    gate, its = find_gate(store, run, node, None)
    return "approval", gate, its


COMMANDS = [serve_cmd, worker_cmd, tick_cmd, token_group, link_cmd]
