"""``smithers store migrate``: bring a PostgreSQL store's tables to this smithers's schema."""

from __future__ import annotations

import click

from smithers.cli.options import emit_json, global_options, out, settings

__all__ = ["COMMANDS"]


@click.group("store")
def store_group() -> None:
    """Manage the store itself (schema migrations)."""


@store_group.command("migrate")
@global_options
def migrate_cmd() -> int:
    """Create or migrate the PostgreSQL store's tables (LMDB stores need no migration)."""
    from smithers.store import migrate_store, redacted

    location, _ = settings().store_path()
    changed = migrate_store(location)
    shown = redacted(location)
    if settings().as_json:
        before, after = changed if changed is not None else (None, None)
        emit_json({"store": shown, "version_before": before, "version": after})
    elif changed is None:
        out(f"The store at {shown} is an LMDB store; it needs no migration.")
    elif changed[0] == changed[1]:
        out(f"The store at {shown} is at schema version {changed[1]}; nothing to do.")
    else:
        out(f"Migrated the store at {shown} from schema version {changed[0]} to {changed[1]}.")
    return 0


COMMANDS = [store_group]
