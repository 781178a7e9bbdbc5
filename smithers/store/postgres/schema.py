"""The PostgreSQL store's tables, their schema version, and the migrations between versions.

Each migration is a list of SQL statements applied in one transaction together with the new
version number, under a transaction-level advisory lock, so that two processes opening a new
database at once migrate it once. Adding a table later is one more entry in `MIGRATIONS`.
"""

from __future__ import annotations

from typing import Any

from smithers.errors import StoreError
from smithers.store.postgres import flow, service

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

# Every run-derived column is written by one function (`rows.run_columns`), so the indexes
# below cannot drift from the record. `record` holds the whole RunRecord but its input.
_V1 = [
    """CREATE TABLE smithers_counters (
        name text PRIMARY KEY,
        value bigint NOT NULL
    )""",
    "INSERT INTO smithers_counters (name, value) VALUES ('runs', 0), ('events', 0)",
    """CREATE TABLE smithers_runs (
        key bigint PRIMARY KEY,
        run_id text NOT NULL UNIQUE,
        status text NOT NULL,
        epoch bigint NOT NULL,
        inbox bigint NOT NULL,
        lease_token text,
        heartbeat double precision,
        wake_at double precision,
        has_news boolean NOT NULL DEFAULT false,
        claimed_until double precision,
        updated_at text NOT NULL,
        record json NOT NULL,
        input bytea
    )""",
    "CREATE INDEX smithers_runs_by_status ON smithers_runs (status, key)",
    "CREATE INDEX smithers_runs_news ON smithers_runs (key) WHERE has_news",
    """CREATE INDEX smithers_runs_wake ON smithers_runs (wake_at, key)
        WHERE wake_at IS NOT NULL AND lease_token IS NULL
        AND status NOT IN ('finished', 'failed', 'cancelled')""",
    """CREATE INDEX smithers_runs_leases ON smithers_runs (heartbeat, key)
        WHERE lease_token IS NOT NULL AND status NOT IN ('finished', 'failed', 'cancelled')""",
    """CREATE TABLE smithers_nodes (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        node_id text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        state text NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_key, node_id, iteration)
    )""",
    """CREATE TABLE smithers_groups (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        kind text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_key, kind, key, iteration)
    )""",
    """CREATE TABLE smithers_attempts (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        node_id text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        number int NOT NULL,
        outcome text NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_key, node_id, iteration, number)
    )""",
    """CREATE TABLE smithers_outputs (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        node_id text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (run_key, node_id, iteration)
    )""",
    """CREATE TABLE smithers_approvals (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        node_id text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        status text NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_key, node_id, iteration)
    )""",
    """CREATE INDEX smithers_approvals_requested ON smithers_approvals (run_key, node_id, iteration)
        WHERE status = 'requested'""",
    """CREATE TABLE smithers_signals (
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        node_id text COLLATE "C" NOT NULL,
        iteration int[] NOT NULL,
        record json NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (run_key, node_id, iteration)
    )""",
    """CREATE TABLE smithers_frames (
        digest text PRIMARY KEY,
        data bytea NOT NULL
    )""",
    # seq comes from the `events` counter row, updated in the committing transaction: see
    # docs/architecture.md ("The event log on PostgreSQL").
    """CREATE TABLE smithers_events (
        seq bigint PRIMARY KEY,
        run_key bigint NOT NULL REFERENCES smithers_runs (key),
        run_id text NOT NULL,
        type text NOT NULL,
        node_id text,
        iteration int[],
        at text NOT NULL,
        data json NOT NULL
    )""",
    "CREATE INDEX smithers_events_by_run ON smithers_events (run_key, seq)",
]

# Version 2: named groups of people for approval policies (`group:NAME` in `approvers`).
_V2 = [
    """CREATE TABLE smithers_actor_groups (
        name text COLLATE "C" PRIMARY KEY,
        members json NOT NULL
    )""",
]

MIGRATIONS: tuple[list[str], ...] = (_V1, _V2, service.MIGRATION, flow.MIGRATION)
"""``MIGRATIONS[i]`` takes a database from schema version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)
_LOCK = 0x736D6974  # "smit": the advisory lock that serialises migrations

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS smithers_schema (
    version int NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now()
)"""


def schema_version(cursor: Any) -> int:
    """The schema version of the connected database (0 when smithers never migrated it)."""
    cursor.execute("SELECT to_regclass('smithers_schema') IS NOT NULL")
    (exists,) = cursor.fetchone()
    if not exists:
        return 0
    cursor.execute("SELECT coalesce(max(version), 0) FROM smithers_schema")
    (version,) = cursor.fetchone()
    return int(version)


def check_version(version: int, where: str) -> None:
    """Refuse a database whose schema a newer smithers wrote.

    Raises:
        StoreError: When ``version`` is newer than this smithers knows.
    """
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The PostgreSQL store at {where} has schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this smithers knows; upgrade smithers on this machine."
        )


def migrate(conn: Any, where: str) -> tuple[int, int]:
    """Bring the database to `SCHEMA_VERSION`, one transaction per migration.

    Args:
        conn: An autocommit psycopg connection.
        where: The store's location, for messages (password hidden).

    Returns:
        The version before and after.

    Raises:
        StoreError: When the database's schema is newer than this smithers knows.
    """
    with conn.cursor() as cursor:
        first = schema_version(cursor)
        check_version(first, where)
        version = first
        while version < SCHEMA_VERSION:
            with conn.transaction():
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                cursor.execute(_VERSION_TABLE)
                version = schema_version(cursor)  # another process may have migrated meanwhile
                check_version(version, where)
                if version >= SCHEMA_VERSION:
                    break
                for statement in MIGRATIONS[version]:
                    cursor.execute(statement)
                version += 1
                cursor.execute("INSERT INTO smithers_schema (version) VALUES (%s)", (version,))
    return first, version
