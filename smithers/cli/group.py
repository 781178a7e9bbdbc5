"""``smithers group add/remove/list``: groups of people that approver lists name as
``group:NAME``."""

from __future__ import annotations

import click

from smithers.cli.options import emit_json, global_options, out, out_lines, settings

__all__ = ["COMMANDS"]


@click.group("group")
def group_cmd() -> None:
    """Groups of people who may decide gates (``approvers=["group:NAME"]``)."""


@group_cmd.command("add")
@click.argument("name")
@click.argument("people", nargs=-1, required=True)
@global_options
def add_cmd(name: str, people: tuple[str, ...]) -> int:
    """Add PEOPLE to group NAME (created on first use)."""
    from smithers.runtime.groups import add_members

    store = settings().open(create=True)
    try:
        members = add_members(store, name, people)
    finally:
        store.close()
    if settings().as_json:
        emit_json({"name": name, "members": list(members)})
    else:
        out(f"Group {name}: {', '.join(members)}.")
    return 0


@group_cmd.command("remove")
@click.argument("name")
@click.argument("people", nargs=-1)
@global_options
def remove_cmd(name: str, people: tuple[str, ...]) -> int:
    """Remove PEOPLE from group NAME; without PEOPLE, remove the whole group."""
    from smithers.runtime.groups import remove_members

    store = settings().open()
    try:
        members = remove_members(store, name, people)
    finally:
        store.close()
    if settings().as_json:
        emit_json({"name": name, "members": list(members)})
    else:
        out(f"Group {name}: {', '.join(members)}." if members else f"Group {name} removed.")
    return 0


@group_cmd.command("list")
@global_options
def list_cmd() -> int:
    """List every group and its members."""
    from smithers.runtime.groups import groups_document

    with settings().reading() as store:
        rows = groups_document(store) if store is not None else []
    if settings().as_json:
        emit_json(rows)
    else:
        lines = [f"{row['name']}: {', '.join(row['members'])}" for row in rows]
        out_lines(lines or ["No groups."])
    return 0


COMMANDS = [group_cmd]
