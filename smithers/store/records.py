"""The records the store persists: msgspec Structs in msgpack map form (never array_like).

Records hold builtins only: the store never imports components or the compiler, so user
values (outputs, inputs, signal data) travel as opaque msgpack bytes. Holding only decoded
data, a record can never be part of a reference cycle, so every record is `gc=False`: the
cyclic garbage collector neither tracks nor traverses the thousands a large run keeps.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "TERMINAL_RUN_STATUSES",
    "ApprovalRecord",
    "ArtifactRecord",
    "AttemptRecord",
    "DefinitionRef",
    "ErrorInfo",
    "EventRecord",
    "EventType",
    "GroupRecord",
    "Iteration",
    "Lease",
    "LinkKey",
    "NewEvent",
    "NodeRecord",
    "Role",
    "RunRecord",
    "RunStatus",
    "SignalRecord",
    "TokenRecord",
    "WebhookRecord",
    "WorkerClaim",
]

Iteration = tuple[int, ...]
RunStatus = Literal[
    "queued",
    "running",
    "waiting-approval",
    "waiting-signal",
    "waiting-timer",
    "finished",
    "failed",
    "cancelled",
]
TERMINAL_RUN_STATUSES = frozenset({"finished", "failed", "cancelled"})
NodeState = Literal[
    "pending",
    "in-progress",
    "waiting-approval",
    "waiting-signal",
    "finished",
    "failed",
    "skipped",
    "cancelled",
    "waiting-timer",
]


class Lease(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Who executes a run now: checked by every owner write, refreshed by a heartbeat."""

    token: str
    epoch: int
    pid: int
    pid_start: int | None = None
    host: str
    heartbeat: float
    acquired_at: str

    def describe(self) -> str:
        """``pid 123 on host``: who this is, for messages."""
        return f"pid {self.pid} on {self.host}"


class DefinitionRef(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False, tag="definition"
):
    """Where a run's definition came from, so ``resume`` needs only the run id."""

    path: str | None = None
    attr: str | None = None
    module: str | None = None
    cwd: str
    source_hash: str | None = None


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Why a run failed: the exception type, its message and the node, if any."""

    type: str
    message: str
    node_id: str | None = None


class RunRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One run: status, definition, input, latest graph frame, lease and inbox counter."""

    run_id: str
    key: int = 0
    workflow: str
    status: RunStatus
    created_at: str
    updated_at: str
    definition: DefinitionRef | None = None
    input: bytes | None = None
    max_concurrency: int = 8
    frame: str | None = None
    error: ErrorInfo | None = None
    lease: Lease | None = None
    # Bumped by every decision, signal delivery and cancel request, so an owner can tell
    # whether anything arrived since it last looked.
    inbox: int = 0
    epoch: int = 0
    cancel_requested: bool = False
    # When a parked run wants to be resumed (a retry backoff, a deadline), in epoch seconds;
    # the store indexes it so that a worker finds due runs without scanning.
    wake_at: float | None = None
    # Who started the run (``--by``, ``$SMITHERS_ACTOR``, the OS user): `forbid_self` bars them.
    started_by: str | None = None
    # The run's concurrency key (DESIGN §14): runs sharing it share the workflow's limit.
    concurrency_key: str | None = None
    concurrency_limit: int = 1


# Records written once or more per node carry short names on disk (their Python names are
# unchanged): the names are most of a small record's bytes. Records are still msgpack maps,
# so adding or reordering fields stays safe; renaming a wire name is a format change.
_NODE_WIRE = {
    "node_id": "n",
    "iteration": "i",
    "kind": "k",
    "state": "s",
    "loops": "l",
    "reason": "r",
    "error": "e",
    "attempts": "a",
    "failures": "f",
    "interrupted": "x",
    "started_at": "t0",
    "finished_at": "t1",
    "attempt_started_at": "ta",
    "due_at": "w",
}
_GROUP_WIRE = {
    "kind": "k",
    "key": "y",
    "iteration": "i",
    "loop_iteration": "li",
    "loop_state": "ls",
    "loops": "l",
    "side": "sd",
    "skip_after": "sa",
    "gate": "g",
}
_ATTEMPT_WIRE = {
    "node_id": "n",
    "iteration": "i",
    "number": "a",
    "started_at": "t0",
    "ended_at": "t1",
    "outcome": "o",
    "error": "e",
    "duration_ms": "d",
}
_EVENT_WIRE = {
    "seq": "q",
    "type": "y",
    "run_id": "r",
    "node_id": "n",
    "iteration": "i",
    "at": "t",
    "data": "d",
}


class NodeRecord(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False, rename=_NODE_WIRE
):
    """A node's durable state at one iteration; written only when it changes."""

    node_id: str
    iteration: Iteration = ()
    kind: str
    state: NodeState
    loops: tuple[str, ...] = ()
    reason: str | None = None
    error: str | None = None
    attempts: int = 0
    failures: int = 0
    interrupted: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    # The running attempt's start: its attempt record is written once, when it ends.
    attempt_started_at: str | None = None
    # When a waiting timer fires, or a waiting signal times out (ISO 8601 UTC).
    due_at: str | None = None


class GroupRecord(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False, rename=_GROUP_WIRE
):
    """Loop progress, a frozen branch side, or a deny-skip mark, per group instance."""

    kind: Literal["loop", "branch", "skip"]
    key: str
    iteration: Iteration = ()
    loop_iteration: int = 0
    loop_state: Literal["pending", "running", "done"] = "pending"
    loops: tuple[str, ...] = ()
    side: bool | None = None
    skip_after: int | None = None
    gate: str | None = None


class AttemptRecord(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False, rename=_ATTEMPT_WIRE
):
    """One attempt of a task: number, timing, outcome and error text."""

    node_id: str
    iteration: Iteration = ()
    number: int
    started_at: str
    ended_at: str | None = None
    outcome: Literal[
        "running", "ok", "failed", "timed-out", "interrupted", "cancelled", "unmounted"
    ] = "running"
    error: str | None = None
    duration_ms: float | None = None


class ApprovalRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A gate's request and decision per (run, node, iteration); nothing is overwritten."""

    node_id: str
    iteration: Iteration = ()
    status: Literal["requested", "approved", "denied", "withdrawn"]
    request: dict[str, Any]
    requested_at: str
    on_deny: str = "fail"
    decision: dict[str, Any] | None = None
    decided_at: str | None = None
    decided_by: str | None = None
    recorded_by: str | None = None
    recorded_on: str | None = None
    withdrawn_at: str | None = None
    withdrawn_because: str | None = None
    # Earlier records of the same key (a gate withdrawn, then mounted and requested again).
    previous: tuple[dict[str, Any], ...] = ()
    # The gate's policy as requested (Approval.policy()); None: anyone, one decision, no time.
    policy: dict[str, Any] | None = None
    # Votes so far ({by, approved, note, at}), in order; the decision copies them.
    votes: tuple[dict[str, Any], ...] = ()
    # When the timeout decides (ISO 8601 UTC), from requested_at and policy["timeout"].
    deadline: str | None = None
    # Reminders emitted and escalation steps applied so far.
    reminders: int = 0
    escalated: int = 0


class SignalRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Data delivered to a `Signal` (held until the node is reached).

    A signal takes one delivery; only a delivery the run rejected (its data did not match
    the Signal's output type) may be replaced, and the rejected one is kept in ``previous``.
    """

    node_id: str
    iteration: Iteration = ()
    data: bytes
    received_at: str
    recorded_by: str | None = None
    recorded_on: str | None = None
    rejected: str | None = None
    previous: tuple[dict[str, Any], ...] = ()


EventType = Literal[
    "run.queued",
    "run.started",
    "run.resumed",
    "run.waiting",
    "run.finished",
    "run.failed",
    "run.cancelled",
    "run.interrupted",
    "run.retried",
    "node.started",
    "node.finished",
    "node.failed",
    "node.retrying",
    "node.skipped",
    "node.cancelled",
    "node.interrupted",
    "approval.requested",
    "approval.decided",
    "approval.withdrawn",
    "signal.waiting",
    "signal.received",
    "signal.rejected",
    "workflow.changed",
    "loop.max-reached",
    "approval.refused",
    "approval.voted",
    "approval.expired",
    "approval.reminder",
    "approval.escalated",
    "timer.waiting",
    "timer.fired",
    "signal.expired",
]
"""Every event type the log holds (DESIGN §8 plus the additions in docs/architecture.md);
a new one is added here, and mypy checks every place that names one."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An event to append; the store gives it the next global sequence number."""

    type: EventType
    node_id: str | None = None
    iteration: Iteration | None = None
    at: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class EventRecord(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False, rename=_EVENT_WIRE
):
    """One entry of the durable, gap-free event log."""

    seq: int
    type: str  # an EventType when written; read as text, so a newer writer's events still read
    run_id: str
    node_id: str | None = None
    iteration: Iteration | None = None
    at: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


# -- the service's records (tokens, signed-link keys, worker claims) ---------------------------

Role = Literal["viewer", "approver", "agent", "admin"]


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An API token: its name (the decider it records), its role, and only a hash of it."""

    name: str
    role: Role
    digest: str  # SHA-256 of the secret, hex: the secret itself is never stored
    created_at: str
    expires_at: float | None = None  # epoch seconds; None never expires
    created_by: str | None = None


class LinkKey(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The HMAC-SHA256 key that signs links; rotating it invalidates every earlier link."""

    key_id: str
    secret: bytes
    created_at: str


class WorkerClaim(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A worker's short claim on a run it is about to resume, and its failures to resume it.

    Attributes:
        owner: The worker holding the claim, or None between failed attempts.
        until: Epoch seconds after which the claim lapses (for a failed run: its next try).
        failures: Resumes in a row that failed to load or crashed (0 after a success).
        error: What the last failed resume said.
        failed_at: When it failed (ISO 8601 UTC).
    """

    run_id: str
    owner: str | None = None
    until: float = 0.0
    failures: int = 0
    error: str | None = None
    failed_at: str | None = None


# -- artifacts, consumer cursors, webhooks (DESIGN §14) ---------------------------------------


class ArtifactRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One artifact of a run: its content's SHA-256 (hex), what the task called it, its size
    in bytes and media type. The bytes are stored once per digest, apart."""

    run_id: str
    sha256: str
    name: str
    size: int
    media_type: str | None = None
    created_at: str | None = None


class WebhookRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A webhook: the worker POSTs each event whose type is in ``events`` to ``url``, signed
    with ``secret`` (HMAC-SHA256) when one is set; its cursor is ``webhook:NAME``."""

    name: str
    url: str
    events: tuple[str, ...]
    secret: str | None = None
    created_at: str | None = None
