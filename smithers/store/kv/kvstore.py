"""`KVStore`: runs, node states, outputs, approvals, signals, events and indexes on a `KV`.

Every state change and its events commit in one write transaction; event numbers are
allocated inside it (``last + 1``), so the log is gap-free and in commit order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from smithers.errors import (
    AlreadyDeliveredError,
    ApprovalRefusedError,
    InputError,
    RunLockedError,
    SignalError,
)
from smithers.store.base import (
    DEAD_AFTER,
    OPEN_RUN_STATUSES,
    Batch,
    CommitResult,
    Decision,
    DueRun,
    NodeKey,
    RunSnapshot,
    check_decidable,
    check_slot,
    check_token,
    run_not_found,
)
from smithers.store.kv import flow, service
from smithers.store.kv.indexes import due_runs, put_run
from smithers.store.kv.keys import (
    MAX_KEY,
    event_key,
    node_key,
    parse_event_key,
    run_key,
)
from smithers.store.kv.protocol import KV, Txn
from smithers.store.records import (
    TERMINAL_RUN_STATUSES,
    ApprovalRecord,
    ArtifactRecord,
    AttemptRecord,
    EventRecord,
    GroupRecord,
    Iteration,
    Lease,
    LinkKey,
    NewEvent,
    NodeRecord,
    RunRecord,
    SignalRecord,
    TokenRecord,
    WebhookRecord,
    WorkerClaim,
)
from smithers.store.rules import group_members
from smithers.store.votes import apply_decision

__all__ = ["KVStore"]

T = TypeVar("T")
_ENC = msgspec.msgpack.Encoder()
_RUN = msgspec.msgpack.Decoder(RunRecord)
_NODE = msgspec.msgpack.Decoder(NodeRecord)
_GROUP = msgspec.msgpack.Decoder(GroupRecord)
_ATTEMPT = msgspec.msgpack.Decoder(AttemptRecord)
_APPROVAL = msgspec.msgpack.Decoder(ApprovalRecord)
_SIGNAL = msgspec.msgpack.Decoder(SignalRecord)
_EVENT = msgspec.msgpack.Decoder(EventRecord)
_U32 = struct.Struct(">I")
_NEXT_RUN = b"next-run-key"
_MEMBERS = msgspec.msgpack.Decoder(list[str])


def _split_node_key(raw: bytes) -> NodeKey:
    """(name, iteration) from a node-table key (run key stripped)."""
    body = raw[8:]
    cut = body.index(b"\x00")
    rest = body[cut + 1 :]
    return body[:cut].decode(), tuple(_U32.unpack_from(rest, i)[0] for i in range(0, len(rest), 4))


def _group_name(record: GroupRecord) -> str:
    return f"{record.kind}/{record.key}"


class KVStore:
    """The one implementation of the `Store` protocol, over any `KV` backend."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv

    @property
    def location(self) -> str | None:
        """Where the store lives, or None in memory."""
        return self._kv.location

    def close(self) -> None:
        self._kv.close()

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self._kv).__name__} store {self.location or 'in memory'}>"

    # -- reads --------------------------------------------------------------------------------

    def _run_key(self, txn: Txn, run_id: str) -> bytes | None:
        raw = run_id.encode()
        if not raw or len(raw) > MAX_KEY:
            return None  # no such run can exist: never hand the backend an impossible key
        return txn.get("run_ids", raw)

    def _get_run(self, txn: Txn, run_id: str) -> tuple[bytes, RunRecord] | None:
        rk = self._run_key(txn, run_id)
        if rk is None:
            return None
        raw = txn.get("runs", rk)
        return None if raw is None else (rk, _RUN.decode(raw))

    def get_run(self, run_id: str) -> RunRecord | None:
        found = self._kv.read(lambda txn: self._get_run(txn, run_id))
        return None if found is None else found[1]

    def runs(self, status: str | None = None) -> list[RunRecord]:
        def read(txn: Txn) -> list[RunRecord]:
            if status is None:
                return [_RUN.decode(raw) for _, raw in txn.scan("runs")]
            found = []
            for key, _ in txn.scan("idx_status", status.encode() + b"\x00"):
                raw = txn.get("runs", key[-8:])
                if raw is not None:
                    found.append(_RUN.decode(raw))
            return found

        return self._kv.read(read)

    def load(self, run_id: str) -> RunSnapshot | None:
        def read(txn: Txn) -> RunSnapshot | None:
            found = self._get_run(txn, run_id)
            if found is None:
                return None
            rk, run = found
            stored_input = txn.get("inputs", rk)
            if stored_input is not None:  # else a store from before inputs had their table
                run = msgspec.structs.replace(run, input=stored_input)
            nodes = {}
            for _, raw in txn.scan("nodes", rk):
                rec = _NODE.decode(raw)
                nodes[(rec.node_id, rec.iteration)] = rec
            groups: dict[tuple[str, str, Iteration], GroupRecord] = {}
            for _, raw in txn.scan("groups", rk):
                grp = _GROUP.decode(raw)
                groups[(grp.kind, grp.key, grp.iteration)] = grp
            outputs = {_split_node_key(k): bytes(v) for k, v in txn.scan("outputs", rk)}
            approvals = {}
            for _, raw in txn.scan("approvals", rk):
                apr = _APPROVAL.decode(raw)
                approvals[(apr.node_id, apr.iteration)] = apr
            signals = {}
            for _, raw in txn.scan("signals", rk):
                sig = _SIGNAL.decode(raw)
                signals[(sig.node_id, sig.iteration)] = sig
            return RunSnapshot(run, nodes, groups, outputs, approvals, signals)

        return self._kv.read(read)

    def output(self, run_id: str, node_id: str, iteration: Iteration) -> bytes | None:
        def read(txn: Txn) -> bytes | None:
            rk = self._run_key(txn, run_id)
            if rk is None:
                return None
            raw = txn.get("outputs", node_key(rk, node_id, iteration))
            return None if raw is None else bytes(raw)

        return self._kv.read(read)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        def read(txn: Txn) -> list[AttemptRecord]:
            rk = self._run_key(txn, run_id)
            return [] if rk is None else [_ATTEMPT.decode(v) for _, v in txn.scan("attempts", rk)]

        return self._kv.read(read)

    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        def read(txn: Txn) -> list[ApprovalRecord]:
            rk = self._run_key(txn, run_id)
            if rk is None:
                return []
            return [_APPROVAL.decode(v) for _, v in txn.scan("approvals", rk)]

        return self._kv.read(read)

    def signals(self, run_id: str) -> list[SignalRecord]:
        def read(txn: Txn) -> list[SignalRecord]:
            rk = self._run_key(txn, run_id)
            return [] if rk is None else [_SIGNAL.decode(v) for _, v in txn.scan("signals", rk)]

        return self._kv.read(read)

    def requested_gates(self) -> list[tuple[RunRecord, ApprovalRecord]]:
        def read(txn: Txn) -> list[tuple[RunRecord, ApprovalRecord]]:
            runs: dict[bytes, RunRecord] = {}
            found = []
            for key, _ in txn.scan("idx_gates"):
                raw = txn.get("approvals", key)
                rk = key[:8]
                if raw is None:
                    continue
                if rk not in runs:
                    run_raw = txn.get("runs", rk)
                    if run_raw is None:
                        continue
                    runs[rk] = _RUN.decode(run_raw)
                found.append((runs[rk], _APPROVAL.decode(raw)))
            return found

        return self._kv.read(read)

    def frame(self, digest: str) -> bytes | None:
        def read(txn: Txn) -> bytes | None:
            raw = txn.get("frames", digest.encode())
            return None if raw is None else bytes(raw)

        return self._kv.read(read)

    def events(
        self, *, after: int = 0, run_id: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        def read(txn: Txn) -> list[EventRecord]:
            found: list[EventRecord] = []
            if limit is not None and limit <= 0:
                return found
            if run_id is None:
                for _, raw in txn.scan("events", start=event_key(after + 1)):
                    found.append(_EVENT.decode(raw))
                    if limit is not None and len(found) >= limit:
                        break
                return found
            rk = self._run_key(txn, run_id)
            if rk is None:
                return found
            for key, _ in txn.scan("run_events", rk, start=rk + event_key(after + 1)):
                stored = txn.get("events", key[8:])
                if stored is not None:
                    found.append(_EVENT.decode(stored))
                if limit is not None and len(found) >= limit:
                    break
            return found

        return self._kv.read(read)

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when the log is empty)."""
        last = self._kv.read(lambda txn: txn.last("events"))
        return 0 if last is None else parse_event_key(last[0])

    def due_runs(
        self,
        now: float,
        limit: int,
        *,
        is_dead: Callable[[Lease], bool] | None = None,
        dead_after: float = DEAD_AFTER,
    ) -> list[DueRun]:
        return due_runs(self._kv, now, limit, is_dead=is_dead, dead_after=dead_after)

    # -- writes -------------------------------------------------------------------------------

    def _write(self, fn: Callable[[Txn], T]) -> T:
        return self._kv.write(fn)

    def _apply(
        self, txn: Txn, rk: bytes, run: RunRecord, batch: Batch, **forced: object
    ) -> tuple[RunRecord, tuple[int, ...]]:
        """Apply ``batch`` (and the ``forced`` run fields) to run ``run`` inside ``txn``;
        return the new run and event seqs."""
        updates = {**batch.run, **forced}
        if batch.release_lease:
            updates["lease"] = None
        if batch.bump_inbox:
            updates["inbox"] = run.inbox + 1
        new_run = msgspec.structs.replace(run, **updates) if updates else run
        for node in batch.nodes:
            txn.put("nodes", node_key(rk, node.node_id, node.iteration), _ENC.encode(node))
        for group in batch.groups:
            txn.put("groups", node_key(rk, _group_name(group), group.iteration), _ENC.encode(group))
        for attempt in batch.attempts:
            key = node_key(rk, attempt.node_id, attempt.iteration) + _U32.pack(attempt.number)
            txn.put("attempts", key, _ENC.encode(attempt))
        for node_id, iteration, raw in batch.outputs:
            txn.put("outputs", node_key(rk, node_id, iteration), raw)
        for approval in batch.approvals:
            key = node_key(rk, approval.node_id, approval.iteration)
            txn.put("approvals", key, _ENC.encode(approval))
            if approval.status == "requested":
                txn.put("idx_gates", key, b"")
            else:
                txn.delete("idx_gates", key)
        for delivered in batch.signals:
            key = node_key(rk, delivered.node_id, delivered.iteration)
            txn.put("signals", key, _ENC.encode(delivered))
        for digest, raw in batch.frames:
            txn.put("frames", digest.encode(), raw, overwrite=False)
        seqs = self._append_events(txn, rk, run.run_id, batch.events)
        if new_run is not run:
            put_run(txn, rk, run, new_run)
        return new_run, seqs

    def _append_events(
        self, txn: Txn, rk: bytes, run_id: str, events: list[NewEvent]
    ) -> tuple[int, ...]:
        if not events:
            return ()
        last = txn.last("events")
        seq = 0 if last is None else parse_event_key(last[0])
        seqs = []
        for event in events:
            seq += 1
            record = EventRecord(
                seq=seq,
                type=event.type,
                run_id=run_id,
                node_id=event.node_id,
                iteration=event.iteration,
                at=event.at,
                data=event.data,
            )
            txn.put("events", event_key(seq), _ENC.encode(record), append=True)
            txn.put("run_events", rk + event_key(seq), b"", append=False)
            seqs.append(seq)
        return tuple(seqs)

    def _need_run(self, txn: Txn, run_id: str) -> tuple[bytes, RunRecord]:
        found = self._get_run(txn, run_id)
        if found is None:
            raise run_not_found(self, run_id)
        return found

    def _creator(self, run: RunRecord, batch: Batch) -> Callable[[Txn], RunRecord]:
        raw_id = run.run_id.encode()

        def write(txn: Txn) -> RunRecord:
            if not raw_id or len(raw_id) > MAX_KEY:
                raise InputError(
                    f"Run id {run.run_id[:40]!r} is invalid; a run id takes 1 to {MAX_KEY} bytes."
                )
            if txn.get("run_ids", raw_id) is not None:
                raise InputError(
                    f"Run id `{run.run_id}` is already taken in this store; pass another "
                    f"--run-id, or continue it with `smithers resume {run.run_id}`."
                )
            if run.concurrency_key is not None:  # one writer at a time: the check holds
                check_slot(run, self._open_runs(txn))
            stored_next = txn.get("meta", _NEXT_RUN)
            number = 1 if stored_next is None else int.from_bytes(stored_next, "big")
            txn.put("meta", _NEXT_RUN, (number + 1).to_bytes(8, "big"))
            rk = run_key(number)
            # The input is written once, in its own table: the run record is rewritten by
            # every heartbeat and status change, and must stay small.
            created = msgspec.structs.replace(run, key=number, input=None)
            if run.input is not None:
                txn.put("inputs", rk, run.input)
            txn.put("run_ids", run.run_id.encode(), rk)
            put_run(txn, rk, None, created)
            new_run, _ = self._apply(txn, rk, created, batch)
            return new_run

        return write

    def create_run(self, run: RunRecord, batch: Batch) -> RunRecord:
        return self._write(self._creator(run, batch))

    def _open_runs(self, txn: Txn) -> list[RunRecord]:
        """Unfinished runs, oldest first (for a concurrency check inside a write)."""
        found = []
        for status in OPEN_RUN_STATUSES:
            for key, _ in txn.scan("idx_status", status.encode() + b"\x00"):
                raw = txn.get("runs", key[-8:])
                if raw is not None:
                    found.append(_RUN.decode(raw))
        return sorted(found, key=lambda r: r.key)

    def _committer(
        self, run_id: str, batch: Batch, token: str | None
    ) -> Callable[[Txn], CommitResult]:
        def write(txn: Txn) -> CommitResult:
            rk, run = self._need_run(txn, run_id)
            check_token(run, token)
            if batch.expect_inbox is not None and run.inbox != batch.expect_inbox:
                return CommitResult(applied=False, run=run)
            new_run, seqs = self._apply(txn, rk, run, batch)
            return CommitResult(applied=True, run=new_run, seqs=seqs)

        return write

    def commit(self, run_id: str, batch: Batch, *, token: str | None) -> CommitResult:
        return self._write(self._committer(run_id, batch, token))

    def commit_many(
        self, items: Sequence[tuple[str | RunRecord, Batch, str | None]]
    ) -> list[CommitResult | RunRecord | Exception]:
        """Several runs' commits in one durable transaction (group commit).

        An item ``(run_id, batch, token)`` is checked and applied as `commit` would (its own
        token, its own ``expect_inbox``); an item ``(run_record, batch, None)`` creates that
        run as `create_run` would. Each runs in a nested transaction: an item that raises (a
        lost lease, a taken run id, a record that does not encode) is undone alone and its
        exception takes its place in the result; the others commit. A store fault fails them
        all and is raised.
        """
        fns: list[Callable[[Txn], CommitResult | RunRecord]] = [
            self._committer(what, b, t) if isinstance(what, str) else self._creator(what, b)
            for what, b, t in items
        ]
        return self._kv.write_each(fns)

    def acquire(
        self,
        run_id: str,
        lease: Lease,
        *,
        is_dead: Callable[[Lease], bool],
        batch: Batch,
    ) -> RunRecord:
        def write(txn: Txn) -> RunRecord:
            rk, run = self._need_run(txn, run_id)
            if run.status in TERMINAL_RUN_STATUSES:
                return run
            if run.lease is not None and not is_dead(run.lease):
                owner = run.lease
                raise RunLockedError(
                    f"Run `{run_id}` is being executed by {owner.describe()} "
                    f"(since {owner.acquired_at}); wait for it, or stop that process first."
                )
            epoch = run.epoch + 1
            new_run, _ = self._apply(
                txn,
                rk,
                run,
                batch,
                lease=msgspec.structs.replace(lease, epoch=epoch),
                epoch=epoch,
                wake_at=None,
            )
            return new_run

        return self._write(write)

    def decide(self, run_id: str, decision: Decision) -> tuple[ApprovalRecord, RunRecord]:
        def write(txn: Txn) -> tuple[ApprovalRecord, RunRecord] | str:
            rk, run = self._need_run(txn, run_id)
            key = node_key(rk, decision.node_id, decision.iteration)
            raw = txn.get("approvals", key)
            record = None if raw is None else _APPROVAL.decode(raw)
            check_decidable(run, record, decision)
            assert record is not None
            groups = self._groups(txn) if record.policy else {}
            applied = apply_decision(run, record, decision, groups=groups)
            if applied.refused is not None:
                # Only the audit event: the gate, the run and its inbox stay as they are.
                self._append_events(txn, rk, run_id, [applied.event])
                return applied.refused
            decided, at = applied.record, decision.decided_at
            assert decided is not None
            batch = Batch(
                run={"inbox": run.inbox + 1, "updated_at": at},
                approvals=[decided],
                events=[applied.event],
            )
            new_run, _ = self._apply(txn, rk, run, batch)
            return decided, new_run

        result = self._write(write)
        if isinstance(result, str):
            raise ApprovalRefusedError(result)
        return result

    def deliver(self, run_id: str, signal: SignalRecord) -> RunRecord:
        def write(txn: Txn) -> RunRecord:
            rk, run = self._need_run(txn, run_id)
            if run.status in TERMINAL_RUN_STATUSES:
                raise SignalError(
                    f"Run `{run_id}` is {run.status}; signals can only reach a run that can "
                    "still go on."
                )
            key = node_key(rk, signal.node_id, signal.iteration)
            existing = txn.get("signals", key)
            if existing is not None:
                old = _SIGNAL.decode(existing)
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
            else:
                record = signal
            txn.put("signals", key, _ENC.encode(record))
            event = NewEvent(
                type="signal.received",
                node_id=signal.node_id,
                iteration=signal.iteration,
                at=signal.received_at,
                data={"recorded_by": signal.recorded_by},
            )
            batch = Batch(
                run={"inbox": run.inbox + 1, "updated_at": signal.received_at}, events=[event]
            )
            new_run, _ = self._apply(txn, rk, run, batch)
            return new_run

        return self._write(write)

    # -- approval policies (appended: issue 11) -------------------------------------------

    def _groups(self, txn: Txn) -> dict[str, tuple[str, ...]]:
        return {k.decode(): tuple(_MEMBERS.decode(v)) for k, v in txn.scan("actor_groups")}

    def actor_groups(self) -> dict[str, tuple[str, ...]]:
        return self._kv.read(self._groups)

    def change_group(
        self, name: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        def write(txn: Txn) -> tuple[str, ...]:
            raw = txn.get("actor_groups", name.encode())
            members = group_members(() if raw is None else _MEMBERS.decode(raw), add, remove)
            if members:
                txn.put("actor_groups", name.encode(), _ENC.encode(list(members)))
            else:
                txn.delete("actor_groups", name.encode())
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
        def write(txn: Txn) -> ApprovalRecord | None:
            rk, run = self._need_run(txn, run_id)
            check_token(run, token)
            raw = txn.get("approvals", node_key(rk, node_id, iteration))
            record = None if raw is None else _APPROVAL.decode(raw)
            if record is None or record.status != "requested":
                return None
            updated = msgspec.structs.replace(record, **changes)
            self._apply(txn, rk, run, Batch(approvals=[updated], events=events))
            return updated

        return self._write(write)

    # -- the service: tokens, the signed-link key, worker claims -------------------------------

    def add_token(self, token: TokenRecord) -> None:
        service.add_token(self._kv, token)

    def tokens(self) -> list[TokenRecord]:
        return service.tokens(self._kv)

    def revoke_token(self, name: str) -> bool:
        return service.revoke_token(self._kv, name)

    def link_key(self, new: LinkKey | None = None, *, rotate: bool = False) -> LinkKey | None:
        return service.link_key(self._kv, new, rotate)

    def claim_run(self, run_id: str, owner: str, *, now: float, until: float) -> bool:
        return service.claim_run(self._kv, run_id, owner, now, until)

    def release_claim(
        self,
        run_id: str,
        owner: str,
        *,
        failure: str | None = None,
        failed_at: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        service.release_claim(self._kv, run_id, owner, failure, failed_at, retry_at)

    def worker_claim(self, run_id: str) -> WorkerClaim | None:
        return service.worker_claim(self._kv, run_id)

    # -- artifacts, consumer cursors, webhooks (DESIGN §14) ----------------------------------

    def put_artifact(self, record: ArtifactRecord, data: bytes) -> None:
        flow.put_artifact(self._kv, record, data)

    def artifact_data(self, sha256: str) -> bytes | None:
        return flow.artifact_data(self._kv, sha256)

    def run_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        return flow.run_artifacts(self._kv, run_id)

    def cursor(self, name: str) -> int:
        return flow.cursor(self._kv, name)

    def set_cursor(self, name: str, seq: int) -> None:
        flow.set_cursor(self._kv, name, seq)

    def add_webhook(self, hook: WebhookRecord) -> None:
        flow.add_webhook(self._kv, hook)

    def webhooks(self) -> list[WebhookRecord]:
        return flow.webhooks(self._kv)

    def remove_webhook(self, name: str) -> bool:
        return flow.remove_webhook(self._kv, name)
