"""`PostgresStore`: the `Store` protocol on PostgreSQL, for many workers on many machines.

Every write is one transaction that first locks the run's row (``SELECT ... FOR UPDATE``),
checks the lease token there (fencing: an owner that lost its lease commits nothing), then
writes and appends its events last (see `events`). Reads run in a read-only snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
import psycopg

from smithers.errors import (
    AlreadyDeliveredError,
    ApprovalRefusedError,
    InputError,
    RunLockedError,
    SignalError,
    SmithersError,
)
from smithers.store.artifacts import verified
from smithers.store.base import (
    DEAD_AFTER,
    OPEN_RUN_STATUSES,
    Batch,
    CommitResult,
    Decision,
    DueRun,
    RunSnapshot,
    check_decidable,
    check_slot,
    check_token,
    run_not_found,
)
from smithers.store.kv.keys import MAX_KEY
from smithers.store.postgres import flow, reads, service
from smithers.store.postgres.claims import claim_due_runs
from smithers.store.postgres.connection import Pool
from smithers.store.postgres.events import Listener, append_events
from smithers.store.postgres.rows import (
    RUN_COLUMNS,
    Encoded,
    apply_batch,
    decode_run,
    run_columns,
)
from smithers.store.records import (
    TERMINAL_RUN_STATUSES,
    ApprovalRecord,
    ArtifactRecord,
    AttemptRecord,
    EventRecord,
    Iteration,
    Lease,
    LinkKey,
    NewEvent,
    RunRecord,
    SignalRecord,
    TokenRecord,
    WebhookRecord,
    WorkerClaim,
)
from smithers.store.rules import group_members
from smithers.store.votes import apply_decision

__all__ = ["PostgresStore"]

T = TypeVar("T")
_APPROVAL = msgspec.json.Decoder(ApprovalRecord)
_SIGNAL = msgspec.json.Decoder(SignalRecord)
_MEMBERS = msgspec.json.Decoder(list[str])
_NEXT_RUN_KEY = "UPDATE smithers_counters SET value = value + 1 WHERE name = 'runs' RETURNING value"
_END_CLAIM = (
    "UPDATE smithers_runs SET claimed_until = NULL WHERE key = %s AND claimed_until IS NOT NULL"
)
_LOCK_RUN = f"SELECT {RUN_COLUMNS} FROM smithers_runs WHERE run_id = %s FOR UPDATE"


class PostgresStore:
    """The `Store` protocol on a PostgreSQL database (open it with `open_postgres_store`).

    Args:
        pool: Connections to a database already at the current schema version.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._listener = Listener(pool.connect)

    @property
    def location(self) -> str | None:
        """The store's URL with its password hidden."""
        return self._pool.where

    def close(self) -> None:
        self._listener.close()
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.location}>"

    def _read(self, fn: Callable[[Any], T]) -> T:
        return self._pool.run(fn, write=False)

    def _write(self, fn: Callable[[Any], T]) -> T:
        return self._pool.run(fn, write=True)

    # -- reads --------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._read(lambda cur: reads.get_run(cur, run_id))

    def runs(self, status: str | None = None) -> list[RunRecord]:
        return self._read(lambda cur: reads.runs(cur, status))

    def load(self, run_id: str) -> RunSnapshot | None:
        return self._read(lambda cur: reads.load(cur, run_id))

    def output(self, run_id: str, node_id: str, iteration: tuple[int, ...]) -> bytes | None:
        return self._read(lambda cur: reads.output(cur, run_id, node_id, iteration))

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        return self._read(lambda cur: reads.attempts(cur, run_id))

    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        return self._read(lambda cur: reads.approvals(cur, run_id))

    def signals(self, run_id: str) -> list[SignalRecord]:
        return self._read(lambda cur: reads.signals(cur, run_id))

    def requested_gates(self) -> list[tuple[RunRecord, ApprovalRecord]]:
        return self._read(reads.requested_gates)

    def frame(self, digest: str) -> bytes | None:
        return self._read(lambda cur: reads.frame(cur, digest))

    def events(
        self, *, after: int = 0, run_id: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        if limit is not None and limit <= 0:
            return []
        return self._read(lambda cur: reads.events(cur, after, run_id, limit))

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when the log is empty)."""
        return self._read(reads.last_seq)

    def due_runs(
        self,
        now: float,
        limit: int,
        *,
        is_dead: Callable[[Lease], bool] | None = None,
        dead_after: float = DEAD_AFTER,
    ) -> list[DueRun]:
        if limit <= 0:
            return []
        found, leased = self._read(lambda cur: reads.due_runs(cur, now, limit, is_dead, dead_after))
        for run in leased:  # judged outside the transaction: is_dead may read /proc
            if len(found) >= limit:
                break
            assert run.lease is not None
            if is_dead is None or is_dead(run.lease):
                found.append(DueRun(run, "owner-dead"))
        return found

    def claim_due_runs(
        self,
        now: float,
        limit: int,
        *,
        hold_for: float = 30.0,
        is_dead: Callable[[Lease], bool] | None = None,
        dead_after: float = DEAD_AFTER,
        owner: str | None = None,
    ) -> list[DueRun]:
        """Like `due_runs`, but claim the runs so that other workers skip them for a while.

        For many workers on one database: each call takes different runs (``FOR UPDATE SKIP
        LOCKED``, then a claim that hides them for ``hold_for`` seconds). A claim is not a
        lease: the resume that follows takes the lease with `acquire` as usual.

        Args:
            now: The current time, epoch seconds.
            limit: The most runs to claim.
            hold_for: Seconds other workers' claims skip these runs.
            is_dead: Judges leased runs' owners (in the transaction); by default, silence
                for ``dead_after`` seconds.
            dead_after: Seconds of silence after which an owner counts as dead by default.
            owner: The claiming worker's name: each claim is recorded for it as `claim_run`
                records one (so `release_claim` ends it, or counts a failure's backoff).

        Returns:
            The claimed runs with the reason each is due (running runs nobody holds, left
            by an interrupted owner, count as ``owner-dead``).
        """
        if limit <= 0:
            return []
        return self._write(
            lambda cur: claim_due_runs(
                cur,
                now,
                limit,
                hold_for=hold_for,
                is_dead=is_dead,
                dead_after=dead_after,
                owner=owner,
            )
        )

    def wait_for_news(self, timeout: float) -> bool:
        """Block until a commit anywhere may have made a run due, or ``timeout`` passes.

        A hint only (LISTEN/NOTIFY on ``smithers_wake``; it lasts ``timeout`` when the server
        cannot be reached): a worker still asks `due_runs` after it, and polls anyway.
        Listening starts at the first call.

        Args:
            timeout: The most seconds to wait.

        Returns:
            True when a notification arrived.
        """
        return self._listener.wait(timeout)

    # -- writes -------------------------------------------------------------------------------

    def _lock_run(self, cur: Any, run_id: str) -> tuple[int, RunRecord, bool]:
        raw = run_id.encode()
        row = None
        if raw and len(raw) <= MAX_KEY:
            cur.execute(_LOCK_RUN, (run_id,))
            row = cur.fetchone()
        if row is None:
            raise run_not_found(self, run_id)
        key, record, has_news = row
        return key, decode_run(record), has_news

    def create_run(self, run: RunRecord, batch: Batch) -> RunRecord:
        return self._write(self._creator(run, batch))

    def _creator(self, run: RunRecord, batch: Batch) -> Callable[[Any], RunRecord]:
        raw_id = run.run_id.encode()
        if not raw_id or len(raw_id) > MAX_KEY:
            raise InputError(
                f"Run id {run.run_id[:40]!r} is invalid; a run id takes 1 to {MAX_KEY} bytes."
            )
        rows = Encoded(batch)

        def write(cur: Any) -> RunRecord:
            # Taking the next run key first serialises creators, so the check below sees a
            # run another creator committed meanwhile.
            cur.execute(_NEXT_RUN_KEY)
            (number,) = cur.fetchone()
            if run.concurrency_key is not None:  # creators are serialised by the counter
                cur.execute(
                    "SELECT record::text FROM smithers_runs WHERE status = ANY(%s) "
                    "AND record->>'concurrency_key' = %s ORDER BY key",
                    (list(OPEN_RUN_STATUSES), run.concurrency_key),
                )
                check_slot(run, [decode_run(raw) for (raw,) in cur.fetchall()])
            cur.execute("SELECT 1 FROM smithers_runs WHERE run_id = %s", (run.run_id,))
            if cur.fetchone() is not None:
                raise InputError(
                    f"Run id `{run.run_id}` is already taken in this store; pass another "
                    f"--run-id, or continue it with `smithers resume {run.run_id}`."
                )
            created = msgspec.structs.replace(run, key=number, input=None)
            cur.execute(
                "INSERT INTO smithers_runs (status, epoch, inbox, lease_token, heartbeat, "
                "wake_at, has_news, updated_at, record, key, run_id, input) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s)",
                (*run_columns(created, False), number, run.run_id, run.input),
            )
            new_run, _ = apply_batch(cur, number, created, False, batch, rows)
            return new_run

        return write

    def commit(self, run_id: str, batch: Batch, *, token: str | None) -> CommitResult:
        return self._write(self._committer(run_id, batch, token))

    def _committer(
        self, run_id: str, batch: Batch, token: str | None
    ) -> Callable[[Any], CommitResult]:
        rows = Encoded(batch)

        def write(cur: Any) -> CommitResult:
            key, run, news = self._lock_run(cur, run_id)
            check_token(run, token)  # fenced under the row lock, in the committing transaction
            if batch.expect_inbox is not None and run.inbox != batch.expect_inbox:
                return CommitResult(applied=False, run=run)
            new_run, seqs = apply_batch(cur, key, run, news, batch, rows)
            return CommitResult(applied=True, run=new_run, seqs=seqs)

        return write

    def commit_many(
        self, items: Sequence[tuple[str | RunRecord, Batch, str | None]]
    ) -> list[CommitResult | RunRecord | Exception]:
        """Several runs' commits in one durable transaction (group commit), as
        `KVStore.commit_many`: each item in its own savepoint, so an item that raises (a lost
        lease, a taken run id) is undone alone and its exception takes its place; a server
        fault fails them all and is raised."""
        fns: list[Callable[[Any], CommitResult | RunRecord] | Exception] = []
        for what, batch, token in items:
            try:
                fns.append(
                    self._committer(what, batch, token)
                    if isinstance(what, str)
                    else self._creator(what, batch)
                )
            except SmithersError as exc:  # refused before any statement
                fns.append(exc)

        def write(cur: Any) -> list[CommitResult | RunRecord | Exception]:
            results: list[CommitResult | RunRecord | Exception] = []
            for fn in fns:
                if isinstance(fn, Exception):
                    results.append(fn)
                    continue
                cur.execute("SAVEPOINT smithers_item")
                try:
                    results.append(fn(cur))
                except psycopg.Error:
                    raise  # the server or the connection: the whole group fails
                except Exception as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT smithers_item")
                    results.append(exc)
                else:
                    cur.execute("RELEASE SAVEPOINT smithers_item")
            return results

        return self._write(write)

    def acquire(
        self,
        run_id: str,
        lease: Lease,
        *,
        is_dead: Callable[[Lease], bool],
        batch: Batch,
    ) -> RunRecord:
        rows = Encoded(batch)

        def write(cur: Any) -> RunRecord:
            key, run, news = self._lock_run(cur, run_id)
            if run.status in TERMINAL_RUN_STATUSES:
                return run
            if run.lease is not None and not is_dead(run.lease):
                owner = run.lease
                raise RunLockedError(
                    f"Run `{run_id}` is being executed by {owner.describe()} "
                    f"(since {owner.acquired_at}); wait for it, or stop that process first."
                )
            epoch = run.epoch + 1
            new_run, _ = apply_batch(
                cur,
                key,
                run,
                news,
                batch,
                rows,
                lease=msgspec.structs.replace(lease, epoch=epoch),
                epoch=epoch,
                wake_at=None,
            )
            # A worker's claim ends when the lease is taken: from now the lease decides, and
            # an owner that dies is found as soon as it counts as dead.
            cur.execute(_END_CLAIM, (key,))
            return new_run

        return self._write(write)

    def decide(self, run_id: str, decision: Decision) -> tuple[ApprovalRecord, RunRecord]:
        def write(cur: Any) -> tuple[ApprovalRecord, RunRecord] | str:
            key, run, news = self._lock_run(cur, run_id)
            # The run's row lock makes this read, check and write one compare-and-set.
            record = _approval(cur, key, decision.node_id, decision.iteration)
            check_decidable(run, record, decision)
            assert record is not None
            groups = _groups(cur) if record.policy else {}
            applied = apply_decision(run, record, decision, groups=groups)
            if applied.refused is not None:
                # Only the audit event: the gate, the run and its inbox stay as they are.
                append_events(cur, key, run_id, [applied.event])
                return applied.refused
            decided = applied.record
            assert decided is not None
            batch = Batch(
                run={"inbox": run.inbox + 1, "updated_at": decision.decided_at},
                approvals=[decided],
                events=[applied.event],
            )
            new_run, _ = apply_batch(cur, key, run, news, batch, Encoded(batch))
            return decided, new_run

        result = self._write(write)
        if isinstance(result, str):
            raise ApprovalRefusedError(result)
        return result

    def deliver(self, run_id: str, signal: SignalRecord) -> RunRecord:
        def write(cur: Any) -> RunRecord:
            key, run, news = self._lock_run(cur, run_id)
            if run.status in TERMINAL_RUN_STATUSES:
                raise SignalError(
                    f"Run `{run_id}` is {run.status}; signals can only reach a run that can "
                    "still go on."
                )
            cur.execute(
                "SELECT record::text, data FROM smithers_signals "
                "WHERE run_key = %s AND node_id = %s AND iteration = %s::int[]",
                (key, signal.node_id, list(signal.iteration)),
            )
            row = cur.fetchone()
            record = signal
            if row is not None:
                old = msgspec.structs.replace(_SIGNAL.decode(row[0]), data=bytes(row[1]))
                if old.rejected is None:
                    its = ".".join(map(str, signal.iteration))
                    raise AlreadyDeliveredError(
                        f"Signal `{signal.node_id}`{' iteration ' + its if its else ''} of run "
                        f"`{run_id}` already received data at {old.received_at}; a signal is "
                        "delivered once."
                    )
                earlier = msgspec.structs.replace(old, previous=())
                record = msgspec.structs.replace(
                    signal, previous=(*old.previous, msgspec.to_builtins(earlier))
                )
            event = NewEvent(
                type="signal.received",
                node_id=signal.node_id,
                iteration=signal.iteration,
                at=signal.received_at,
                data={"recorded_by": signal.recorded_by},
            )
            batch = Batch(
                run={"inbox": run.inbox + 1, "updated_at": signal.received_at},
                signals=[record],
                events=[event],
            )
            new_run, _ = apply_batch(cur, key, run, news, batch, Encoded(batch))
            return new_run

        return self._write(write)

    # -- approval policies ------------------------------------------------------------------

    def actor_groups(self) -> dict[str, tuple[str, ...]]:
        return self._read(_groups)

    def change_group(
        self, name: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        def write(cur: Any) -> tuple[str, ...]:
            cur.execute(
                "SELECT members::text FROM smithers_actor_groups WHERE name = %s FOR UPDATE",
                (name,),
            )
            row = cur.fetchone()
            members = group_members(() if row is None else _MEMBERS.decode(row[0]), add, remove)
            if members:
                cur.execute(
                    "INSERT INTO smithers_actor_groups (name, members) VALUES (%s, %s::json) "
                    "ON CONFLICT (name) DO UPDATE SET members = EXCLUDED.members",
                    (name, msgspec.json.encode(list(members)).decode()),
                )
            else:
                cur.execute("DELETE FROM smithers_actor_groups WHERE name = %s", (name,))
            return members

        return self._write(write)

    def update_gate(
        self,
        run_id: str,
        node_id: str,
        iteration: Iteration,
        changes: dict[str, Any],
        events: list[NewEvent],
        *,
        token: str | None,
    ) -> ApprovalRecord | None:
        def write(cur: Any) -> ApprovalRecord | None:
            key, run, news = self._lock_run(cur, run_id)
            check_token(run, token)
            record = _approval(cur, key, node_id, iteration)
            if record is None or record.status != "requested":
                return None
            updated = msgspec.structs.replace(record, **changes)
            batch = Batch(approvals=[updated], events=events)
            apply_batch(cur, key, run, news, batch, Encoded(batch))
            return updated

        return self._write(write)

    # -- the service: tokens, the signed-link key, worker claims --------------------------

    def add_token(self, token: TokenRecord) -> None:
        self._write(lambda cur: service.add_token(cur, token))

    def tokens(self) -> list[TokenRecord]:
        return self._read(service.tokens)

    def revoke_token(self, name: str) -> bool:
        return self._write(lambda cur: service.revoke_token(cur, name))

    def link_key(self, new: LinkKey | None = None, *, rotate: bool = False) -> LinkKey | None:
        return self._write(lambda cur: service.link_key(cur, new, rotate))

    def claim_run(self, run_id: str, owner: str, *, now: float, until: float) -> bool:
        return self._write(lambda cur: service.claim_run(cur, run_id, owner, now, until))

    def release_claim(
        self,
        run_id: str,
        owner: str,
        *,
        failure: str | None = None,
        failed_at: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        self._write(
            lambda cur: service.release_claim(cur, run_id, owner, failure, failed_at, retry_at)
        )

    def worker_claim(self, run_id: str) -> WorkerClaim | None:
        return self._read(lambda cur: service.worker_claim(cur, run_id))

    # -- artifacts, consumer cursors, webhooks (DESIGN §14) ----------------------------------

    def put_artifact(self, record: ArtifactRecord, data: bytes) -> None:
        self._write(lambda cur: flow.put_artifact(cur, record, data))

    def artifact_data(self, sha256: str) -> bytes | None:
        data = self._read(lambda cur: flow.artifact_data(cur, sha256))
        return verified(sha256, data, self.location)

    def run_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        return self._read(lambda cur: flow.run_artifacts(cur, run_id))

    def cursor(self, name: str) -> int:
        return self._read(lambda cur: flow.cursor(cur, name))

    def set_cursor(self, name: str, seq: int) -> None:
        self._write(lambda cur: flow.set_cursor(cur, name, seq))

    def add_webhook(self, hook: WebhookRecord) -> None:
        self._write(lambda cur: flow.add_webhook(cur, hook))

    def webhooks(self) -> list[WebhookRecord]:
        return self._read(flow.webhooks)

    def remove_webhook(self, name: str) -> bool:
        return self._write(lambda cur: flow.remove_webhook(cur, name))


def _approval(cur: Any, key: int, node_id: str, iteration: Iteration) -> ApprovalRecord | None:
    cur.execute(
        "SELECT record::text FROM smithers_approvals "
        "WHERE run_key = %s AND node_id = %s AND iteration = %s::int[]",
        (key, node_id, list(iteration)),
    )
    row = cur.fetchone()
    return None if row is None else _APPROVAL.decode(row[0])


def _groups(cur: Any) -> dict[str, tuple[str, ...]]:
    cur.execute("SELECT name, members::text FROM smithers_actor_groups")
    return {name: tuple(_MEMBERS.decode(raw)) for name, raw in cur.fetchall()}
