"""The PostgreSQL store's housekeeping: schema versions and migrations, lost connections as
one-sentence errors, and the indexes that answer the worker's questions."""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg
import pytest

from smithers.errors import StoreError
from smithers.store import Batch, open_store
from smithers.store.postgres import PostgresStore, migrate_store
from smithers.store.postgres.schema import SCHEMA_VERSION
from tests.store.helpers import event, lease, node, requested, run_record
from tests.store.postgres_helpers import DEADLINE, hold_writes, in_thread

# -- schema versions -------------------------------------------------------------------------


def test_a_database_of_a_newer_schema_is_refused(postgres_cluster: Any) -> None:
    """A store written by a newer smithers gives one sentence saying to upgrade."""
    url = postgres_cluster.create_database("newer")
    migrate_store(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO smithers_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(
        StoreError,
        match=re.escape(
            f"has schema version {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION} this "
            "smithers knows; upgrade smithers on this machine."
        ),
    ):
        open_store(url)


def test_an_empty_database_is_created_on_first_use_and_migrate_is_idempotent(
    postgres_cluster: Any,
) -> None:
    """First use creates the tables; `migrate_store` then has nothing to do."""
    url = postgres_cluster.create_database("fresh")
    with pytest.raises(StoreError, match="holds no smithers store; start a run there first"):
        open_store(url, readonly=True)
    open_store(url).close()
    assert migrate_store(url) == (SCHEMA_VERSION, SCHEMA_VERSION)


def test_workers_opening_a_new_database_at_once_create_it_once(postgres_cluster: Any) -> None:
    """Six processes' first use at the same moment: every open succeeds, each migration ran
    once."""
    url = postgres_cluster.create_database("stampede")
    barrier = threading.Barrier(6)

    def first_use() -> None:
        barrier.wait(DEADLINE)
        open_store(url).close()

    threads = [in_thread(first_use) for _ in range(6)]
    for thread, box in threads:
        thread.join(DEADLINE)
        assert "error" not in box, box.get("error")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT version FROM smithers_schema ORDER BY version").fetchall()
    assert rows == [(version,) for version in range(1, SCHEMA_VERSION + 1)]  # each once


def test_an_older_schema_asks_for_an_explicit_migration_which_adds_a_table(
    postgres_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A smithers with one more migration refuses a database at the older version until
    `migrate_store` applies it (here: a new table), then opens it."""
    import smithers.store.postgres as package
    import smithers.store.postgres.schema as schema

    url = postgres_cluster.create_database("older")
    migrate_store(url)
    newer = (*schema.MIGRATIONS, ["CREATE TABLE smithers_later (name text PRIMARY KEY)"])
    monkeypatch.setattr(schema, "MIGRATIONS", newer)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(newer))
    monkeypatch.setattr(package, "SCHEMA_VERSION", len(newer))
    with pytest.raises(
        StoreError,
        match=re.escape(
            f"has schema version {len(newer) - 1}, older than the {len(newer)} this smithers "
            "needs; run `smithers store migrate` once, then try again."
        ),
    ):
        open_store(url)
    assert migrate_store(url) == (len(newer) - 1, len(newer))
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM smithers_later").fetchone() == (0,)


# -- lost connections ------------------------------------------------------------------------


def test_a_connection_the_server_dropped_while_idle_is_replaced(
    pg: PostgresStore, postgres_url: str
) -> None:
    """After the server ends every idle connection (a restart), the next call just works."""
    pg.create_run(run_record("r"), Batch())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert pg.commit("r", Batch(events=[event("run.resumed")]), token=None).seqs == (1,)


def test_a_connection_lost_mid_commit_is_one_sentence_and_writes_nothing(
    pg: PostgresStore, postgres_url: str
) -> None:
    """A commit whose connection dies before COMMIT raises StoreError; nothing landed."""
    pg.create_run(run_record("r"), Batch())

    def kill_myself() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    hold_writes(pg, kill_myself)
    with pytest.raises(StoreError) as raised:
        pg.commit("r", Batch(nodes=[node("t")], events=[event("x")]), token=None)
    message = str(raised.value)
    assert message.startswith("The PostgreSQL store at postgresql://smithers@127.0.0.1:")
    assert message.endswith(
        "so nothing of this step was written; check the server, then resume the run."
    )
    assert "\n" not in message
    with open_store(postgres_url) as fresh:
        loaded = fresh.load("r")
        assert loaded is not None
        assert loaded.nodes == {}
        assert fresh.last_seq() == 0


def test_a_failed_statement_leaves_the_pooled_connection_usable(pg: PostgresStore) -> None:
    """A statement the server cancels (a statement timeout) is a StoreError, and the same
    pooled connection serves the next call (its transaction was rolled back)."""
    pg.create_run(run_record("r"), Batch())

    def slow(cursor: Any) -> None:
        cursor.execute("SET LOCAL statement_timeout = '10ms'")
        cursor.execute("SELECT pg_sleep(1)")

    with pytest.raises(StoreError, match="canceling statement due to statement timeout"):
        pg._pool.run(slow, write=False)
    assert pg.commit("r", Batch(events=[event("run.resumed")]), token=None).seqs == (1,)


# -- indexes -----------------------------------------------------------------------------------


class _Recording:
    """A cursor that remembers each statement it runs (and runs it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.statements: list[tuple[str, Any]] = []

    def execute(self, query: str, params: Any = None) -> Any:
        self.statements.append((query, params))
        return self.inner.execute(query, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_workers_questions_are_answered_by_their_indexes(pg: PostgresStore) -> None:
    """With sequential scans off, every query of due_runs, claims, the inbox and one run's
    events is planned on its own index (so none of them needs a scan of all runs)."""
    from smithers.store.postgres import reads
    from smithers.store.postgres.claims import claim_due_runs

    pg.create_run(run_record("r", lease=lease()), Batch(approvals=[requested("g")]))

    def plans(cursor: Any) -> list[str]:
        recorder = _Recording(cursor)
        reads.due_runs(recorder, 50.0, 10, None, 10.0)
        reads.requested_gates(recorder)
        reads.events(recorder, 0, "r", None)
        claim_due_runs(recorder, 50.0, 10, hold_for=1.0, is_dead=None, dead_after=10.0)
        cursor.execute("SET LOCAL enable_seqscan = off")
        found = []
        for query, params in recorder.statements:
            if query.lstrip().startswith("SELECT"):
                cursor.execute("EXPLAIN " + query, params)
                found.append(" ".join(row[0] for row in cursor.fetchall()))
        return found

    found = pg._pool.run(plans, write=True)
    names = [
        "smithers_runs_news",
        "smithers_runs_wake",
        "smithers_runs_leases",
        "smithers_approvals_requested",
        "smithers_events_by_run",
        "smithers_runs_news",
        "smithers_runs_wake",
        "smithers_runs_leases",
        "smithers_runs_by_status",
    ]
    assert len(found) == len(names)
    for plan, name in zip(found, names, strict=True):
        assert name in plan, plan
