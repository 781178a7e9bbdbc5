"""The `Store` protocol the runtime sees, the `Batch` it commits, and shared store helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, Protocol

import attrs
import msgspec

from smithers.errors import (
    AlreadyDecidedError,
    ConcurrencyLimitError,
    GateNotRequestedError,
    LeaseLostError,
    RunNotFoundError,
)
from smithers.store.records import (
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

__all__ = [
    "DEAD_AFTER",
    "OPEN_RUN_STATUSES",
    "Batch",
    "CommitResult",
    "Decision",
    "DueRun",
    "NodeKey",
    "RunSnapshot",
    "Store",
    "WakeReason",
    "check_decidable",
    "check_slot",
    "check_token",
    "default_store_path",
    "is_parked",
    "need_run",
    "redacted",
    "run_not_found",
]

NodeKey = tuple[str, Iteration]


@attrs.define
class Batch:
    """Everything one write transaction commits for a run, events included.

    Attributes:
        run: Field updates applied to the run record read inside the transaction (so a
            concurrent inbox bump is never lost).
        expect_inbox: When set, the commit happens only if the run's inbox still equals it
            (parking: nothing arrived since the owner last looked).
        release_lease: Clear the lease in the same transaction.
        bump_inbox: Tell the owner something arrived (a cancel request).
    """

    run: dict[str, Any] = attrs.field(factory=dict)
    nodes: list[NodeRecord] = attrs.field(factory=list)
    groups: list[GroupRecord] = attrs.field(factory=list)
    attempts: list[AttemptRecord] = attrs.field(factory=list)
    outputs: list[tuple[str, Iteration, bytes]] = attrs.field(factory=list)
    approvals: list[ApprovalRecord] = attrs.field(factory=list)
    signals: list[SignalRecord] = attrs.field(factory=list)
    frames: list[tuple[str, bytes]] = attrs.field(factory=list)
    events: list[NewEvent] = attrs.field(factory=list)
    expect_inbox: int | None = None
    release_lease: bool = False
    bump_inbox: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.run
            or self.nodes
            or self.groups
            or self.attempts
            or self.outputs
            or self.approvals
            or self.signals
            or self.frames
            or self.events
            or self.release_lease
            or self.bump_inbox
        )


@attrs.frozen
class CommitResult:
    """What a commit saw: whether it applied, the run afterwards, and the events' numbers."""

    applied: bool
    run: RunRecord
    seqs: tuple[int, ...] = ()


@attrs.frozen
class Decision:
    """An approval decision to record (compare-and-set on a requested gate)."""

    node_id: str
    iteration: Iteration
    approved: bool
    note: str | None
    decided_by: str | None
    decided_at: str
    recorded_by: str | None
    recorded_on: str | None
    # The deadline deciding (decided_by "smithers:timeout"): no vote, event approval.expired.
    expired: bool = False


WakeReason = Literal["news", "due", "owner-dead"]
DEAD_AFTER = 10.0  # seconds: an owner silent this long is dead (the runtime's rule too)


@attrs.frozen
class DueRun:
    """A run a worker should resume now, and why.

    Attributes:
        run: The run record (without its input).
        reason: ``news`` (a decision, signal or cancel arrived since it parked), ``due`` (its
            wake-up time has come) or ``owner-dead`` (its lease holder is gone).
    """

    run: RunRecord
    reason: WakeReason


def is_parked(run: RunRecord) -> bool:
    """Whether the run waits for a person or a signal with no process holding it."""
    return run.lease is None and run.status in (
        "waiting-approval",
        "waiting-signal",
        "waiting-timer",
    )


@attrs.frozen
class RunSnapshot:
    """A run's records, read in one transaction."""

    run: RunRecord
    nodes: dict[NodeKey, NodeRecord]
    groups: dict[tuple[str, str, Iteration], GroupRecord]
    outputs: dict[NodeKey, bytes]
    approvals: dict[NodeKey, ApprovalRecord]
    signals: dict[NodeKey, SignalRecord]


class Store(Protocol):
    """What the runtime needs from persistence. One shared contract suite tests every store."""

    @property
    def location(self) -> str | None:
        """Where the store lives (an LMDB directory today), or None for an in-memory store."""

    def close(self) -> None:
        """Release the store's resources."""

    # -- reads ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run record, or None. Its ``input`` is left out (`load` carries it)."""

    def runs(self, status: str | None = None) -> list[RunRecord]:
        """Every run (or those with ``status``, from the status index), oldest first.

        Like `get_run`, the records leave the input out.
        """

    def load(self, run_id: str) -> RunSnapshot | None:
        """All of a run's records, input included, in one read transaction, or None."""

    def output(self, run_id: str, node_id: str, iteration: Iteration) -> bytes | None:
        """One committed output's bytes."""

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt of the run, by node then number."""

    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        """Every approval record of the run."""

    def signals(self, run_id: str) -> list[SignalRecord]:
        """Every signal delivery of the run."""

    def requested_gates(self) -> list[tuple[RunRecord, ApprovalRecord]]:
        """Every requested gate across runs, from the index (not a scan of all runs)."""

    def frame(self, digest: str) -> bytes | None:
        """A stored graph frame by its hash."""

    def events(
        self, *, after: int = 0, run_id: str | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        """Events with ``seq > after``, in order; one run's from its index."""

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when the log is empty)."""

    def due_runs(
        self,
        now: float,
        limit: int,
        *,
        is_dead: Callable[[Lease], bool] | None = None,
        dead_after: float = DEAD_AFTER,
    ) -> list[DueRun]:
        """Runs a worker should resume now, from indexes (never a scan of all runs).

        First parked runs whose inbox moved since they parked (oldest run first), then
        unleased runs whose ``wake_at`` is at or before ``now`` (earliest first), then leased
        runs whose owner is dead (longest silent first). Each run appears once.

        Args:
            now: The current time, epoch seconds (from the caller's clock).
            limit: The most runs to return.
            is_dead: Judges each leased run's owner (e.g. checks its pid); by default an
                owner is dead when its heartbeat is older than ``now - dead_after``.
            dead_after: Seconds of silence after which an owner counts as dead by default.

        Returns:
            Up to ``limit`` runs with the reason each is due.
        """

    # -- writes -----------------------------------------------------------------------------

    def create_run(self, run: RunRecord, batch: Batch) -> RunRecord:
        """Insert a new run (assigning its internal key) and commit ``batch`` with it.

        The input is stored once, apart from the record (which later commits rewrite); the
        record returned, like those `get_run` returns, leaves it out.

        Raises:
            ValueError: When the run id is taken.
        """

    def commit(self, run_id: str, batch: Batch, *, token: str | None) -> CommitResult:
        """Apply ``batch`` atomically; with ``token`` first check the caller still owns the run.

        Raises:
            LeaseLostError: When ``token`` is not the run's lease token.
        """

    def acquire(
        self,
        run_id: str,
        lease: Lease,
        *,
        is_dead: Callable[[Lease], bool],
        batch: Batch,
    ) -> RunRecord:
        """Take the run's lease unless a live owner holds it; commit ``batch`` with it.

        A terminal run is returned unchanged (and ``batch`` is not applied). Taking the lease
        clears the run's ``wake_at`` and its news: the new owner sets a wake-up when it parks.

        Raises:
            RunNotFoundError: For an unknown run.
            RunLockedError: When the current owner is alive.
        """

    def decide(self, run_id: str, decision: Decision) -> tuple[ApprovalRecord, RunRecord]:
        """Record a decision on a requested gate: read, check and write in one transaction.

        The gate's policy is judged in the same transaction (`store.votes`): a vote short of
        the quorum is recorded with ``approval.voted``; the deciding vote (or the deadline's
        ``expired`` decision) resolves the gate with ``approval.decided`` (``expired``). Both
        bump the run's inbox.

        Raises:
            RunNotFoundError, GateNotRequestedError, AlreadyDecidedError: Nothing is written.
            ApprovalRefusedError: The policy does not let this person decide (not an
                approver, the starter under forbid_self, a second vote); only the
                ``approval.refused`` event is written.
        """

    def deliver(self, run_id: str, signal: SignalRecord) -> RunRecord:
        """Record a signal's data once; bumps the run's inbox and appends ``signal.received``.

        Raises:
            RunNotFoundError, AlreadyDeliveredError: Nothing is written.
        """

    # -- approval policies (appended: issue 11) ----------------------------------------------

    def actor_groups(self) -> dict[str, tuple[str, ...]]:
        """Every group of people (``group:NAME`` in approver lists): name -> members."""

    def change_group(
        self, name: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Add and remove members of a group in one transaction; an emptied group is gone.

        Returns:
            The group's members afterwards, sorted.
        """

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
        """Apply ``changes`` (reminders, escalated) to a gate still requested, with its
        events, in one transaction; None (nothing written) when it is no longer requested.

        Raises:
            LeaseLostError: When ``token`` is not the run's lease token.
        """

    # -- the service: tokens, the signed-link key, worker claims ------------------------------

    def add_token(self, token: TokenRecord) -> None:
        """Store a new API token (only its hash) under its name.

        Raises:
            InputError: When a token of that name exists; nothing is written.
        """

    def tokens(self) -> list[TokenRecord]:
        """Every API token, by name."""

    def revoke_token(self, name: str) -> bool:
        """Delete the token ``name``; return whether it existed."""

    def link_key(self, new: LinkKey | None = None, *, rotate: bool = False) -> LinkKey | None:
        """The key that signs links: stores ``new`` when there is none yet (or, with
        ``rotate``, in place of the current one, which invalidates every earlier link)."""

    def claim_run(self, run_id: str, owner: str, *, now: float, until: float) -> bool:
        """Claim a run for worker ``owner`` until ``until`` (compare-and-set).

        Returns:
            False when another worker's claim, or a failed resume's backoff, holds it at
            ``now``.
        """

    def release_claim(
        self,
        run_id: str,
        owner: str,
        *,
        failure: str | None = None,
        failed_at: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Drop ``owner``'s claim. After a success the run's failure count is cleared; with
        ``failure`` it is counted, kept with its message, and the run waits until
        ``retry_at`` (the backoff)."""

    def worker_claim(self, run_id: str) -> WorkerClaim | None:
        """The run's claim and failures to resume, or None."""

    # -- artifacts, consumer cursors, webhooks (DESIGN §14) ----------------------------------

    def put_artifact(self, record: ArtifactRecord, data: bytes) -> None:
        """Store ``data`` once under its SHA-256 and list ``record`` with its run.

        Raises:
            InputError: When ``data`` does not hash to ``record.sha256``; nothing is written.
        """

    def artifact_data(self, sha256: str) -> bytes | None:
        """An artifact's bytes, checked against their digest on every read, or None.

        Raises:
            StoreError: When the stored bytes no longer hash to ``sha256`` (damage).
        """

    def run_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        """The artifacts put by a run's tasks, by digest then name."""

    def cursor(self, name: str) -> int:
        """The last event number consumer ``name`` acknowledged; 0 when it has none."""

    def set_cursor(self, name: str, seq: int) -> None:
        """Record that consumer ``name`` has handled every event up to ``seq``."""

    def add_webhook(self, hook: WebhookRecord) -> None:
        """Store a new webhook under its name.

        Raises:
            InputError: When a webhook of that name exists; nothing is written.
        """

    def webhooks(self) -> list[WebhookRecord]:
        """Every webhook, by name."""

    def remove_webhook(self, name: str) -> bool:
        """Delete webhook ``name`` and its cursor; return whether it existed."""


def run_not_found(
    store: Store, run_id: str, error: type[RunNotFoundError] = RunNotFoundError
) -> RunNotFoundError:
    """The one-sentence error for a run id the store does not hold."""
    return error(
        f"No run `{run_id}` in the store at {store.location or 'memory'}; list runs with "
        "`smithers runs`."
    )


def need_run(
    store: Store, run_id: str, error: type[RunNotFoundError] = RunNotFoundError
) -> RunRecord:
    """The run's record, or ``error`` (a `RunNotFoundError`) naming the store and the fix."""
    run = store.get_run(run_id)
    if run is None:
        raise run_not_found(store, run_id, error)
    return run


def check_token(run: RunRecord, token: str | None) -> None:
    """Raise `LeaseLostError` unless ``token`` is the run's current lease token."""
    if token is not None and (run.lease is None or run.lease.token != token):
        owner = run.lease.describe() if run.lease else "nobody"
        raise LeaseLostError(
            f"Run `{run.run_id}` is no longer owned by this process (now {owner}); it stopped "
            "without committing."
        )


def check_decidable(run: RunRecord, record: ApprovalRecord | None, decision: Decision) -> None:
    """Refuse a decision on a gate that is not requested now (shared by every store)."""
    where = _where(decision.node_id, decision.iteration)
    if record is None or record.status == "withdrawn":
        raise GateNotRequestedError(
            f"Gate {where} of run `{run.run_id}` has not been requested"
            + (" (it was withdrawn)" if record is not None else "")
            + "; decide it once `smithers approvals` lists it."
        )
    if record.status != "requested":
        what = "approved" if record.status == "approved" else "denied"
        note = (record.decision or {}).get("note")
        raise AlreadyDecidedError(
            f"Gate {where} of run `{run.run_id}` was already {what} by "
            f"{record.decided_by or 'unknown'} at {record.decided_at}"
            + (f" ({note!r})" if note else "")
            + "; a decision is final."
        )


def _where(node_id: str, iteration: Iteration) -> str:
    its = f" iteration {'.'.join(map(str, iteration))}" if iteration else ""
    return f"`{node_id}`{its}"


def decided_record(
    record: ApprovalRecord, decision: Decision, votes: tuple[dict[str, Any], ...] = ()
) -> ApprovalRecord:
    """The approval record after ``decision`` (the stored decision is the gate's output)."""
    extra: dict[str, Any] = {"votes": list(votes)} if votes else {}
    return msgspec.structs.replace(
        record,
        status="approved" if decision.approved else "denied",
        votes=votes,
        decision={
            "approved": decision.approved,
            "note": decision.note,
            "decided_by": decision.decided_by,
            "decided_at": decision.decided_at,
            **extra,
        },
        decided_at=decision.decided_at,
        decided_by=decision.decided_by,
        recorded_by=decision.recorded_by,
        recorded_on=decision.recorded_on,
    )


def default_store_path(start: str | None = None) -> tuple[str, bool]:
    """Resolve the store directory: ``$SMITHERS_STORE``, else the nearest ``.smithers/``
    walking up from ``start`` (the working directory), else ``./.smithers``.

    Returns:
        The path and whether it was found by that default rule (commands printed for other
        people then need no ``--store``).
    """
    env = os.environ.get("SMITHERS_STORE")
    if env:
        return os.path.abspath(env), False
    here = os.path.abspath(start or os.getcwd())
    probe = here
    while True:
        candidate = os.path.join(probe, ".smithers")
        if os.path.isdir(candidate):
            return candidate, True
        parent = os.path.dirname(probe)
        if parent == probe:
            return os.path.join(here, ".smithers"), True
        probe = parent


OPEN_RUN_STATUSES = ("queued", "running", "waiting-approval", "waiting-signal", "waiting-timer")
"""Statuses of runs that hold (or wait for) a concurrency slot."""


def check_slot(run: RunRecord, open_runs: list[RunRecord]) -> None:
    """Inside a creating transaction: refuse a new running ``run`` whose concurrency key has
    no free slot (or has queued runs ahead of it). ``open_runs`` are the key's unfinished
    runs, oldest first. Creators are serialised, so two can never both take the last slot.

    Raises:
        ConcurrencyLimitError: With ``ahead``, the run it would wait behind.
    """
    if run.concurrency_key is None or run.status != "running":
        return
    same = [r for r in open_runs if r.concurrency_key == run.concurrency_key]
    active = [r for r in same if r.status != "queued"]
    if len(active) >= run.concurrency_limit or len(active) < len(same):
        raise ConcurrencyLimitError(
            f"Run {run.run_id} was not started: concurrency key {run.concurrency_key!r} has "
            f"{len(active)} active run(s) (limit {run.concurrency_limit}); start it again "
            f"when run {same[-1].run_id} ends.",
            ahead=same[-1].run_id,
        )


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (messages are shown and logged)."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, userinfo = head.partition("://")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{tail}"
