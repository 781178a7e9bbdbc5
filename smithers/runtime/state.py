"""`RunState`: the executing process's mirror of a run's records, and the changes it stages.

Every change goes through here: it updates the mirror and marks the record dirty, and
`take_batch` turns the dirty records plus staged events into one `Batch` for one commit.
Records are written only when they change; there is no snapshot per step.
"""

from __future__ import annotations

import bisect
from typing import Any

import msgspec

from smithers.runtime.lease import now_iso
from smithers.store.base import Batch, NodeKey, RunSnapshot
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventType,
    GroupRecord,
    Iteration,
    NewEvent,
    NodeRecord,
    RunRecord,
    SignalRecord,
)

__all__ = ["TERMINAL_NODE_STATES", "RunState"]

TERMINAL_NODE_STATES = frozenset({"finished", "skipped", "failed", "cancelled"})
GroupKey = tuple[str, str, Iteration]


class RunState:
    """A run's records in memory, plus what changed since the last commit."""

    def __init__(self, snapshot: RunSnapshot) -> None:
        self.run: RunRecord = snapshot.run
        self.nodes: dict[NodeKey, NodeRecord] = dict(snapshot.nodes)
        self.groups: dict[GroupKey, GroupRecord] = dict(snapshot.groups)
        self.outputs: dict[NodeKey, bytes] = dict(snapshot.outputs)
        self.approvals: dict[NodeKey, ApprovalRecord] = dict(snapshot.approvals)
        self.signals: dict[NodeKey, SignalRecord] = dict(snapshot.signals)
        self.skip_marks = {key for key in self.groups if key[0] == "skip"}
        self.output_iterations: dict[str, list[Iteration]] = {}
        for node_id, iteration in sorted(self.outputs):
            self.output_iterations.setdefault(node_id, []).append(iteration)
        self._nodes: dict[NodeKey, NodeRecord] = {}
        self._groups: dict[GroupKey, GroupRecord] = {}
        self._attempts: dict[tuple[NodeKey, int], AttemptRecord] = {}
        self._outputs: list[tuple[str, Iteration, bytes]] = []
        self._approvals: dict[NodeKey, ApprovalRecord] = {}
        self._signals: dict[NodeKey, SignalRecord] = {}
        self._frames: list[tuple[str, bytes]] = []
        self._events: list[NewEvent] = []
        self._run: dict[str, Any] = {}

    # -- reads --------------------------------------------------------------------------------

    def node(self, key: NodeKey) -> NodeRecord | None:
        """The node's record, or None when it never left ``pending``."""
        return self.nodes.get(key)

    def loop(self, loop_id: str, outer: Iteration) -> GroupRecord | None:
        """The loop instance's record, or None before it started."""
        return self.groups.get(("loop", loop_id, outer))

    def loop_iteration(self, loop_id: str, outer: Iteration) -> int:
        """The loop instance's current iteration (0 before it started)."""
        record = self.groups.get(("loop", loop_id, outer))
        return 0 if record is None else record.loop_iteration

    def current_iteration(self, loops: tuple[str, ...]) -> Iteration:
        """The iteration tuple of a node inside ``loops`` (outermost first), as of now."""
        iteration: Iteration = ()
        for loop_id in loops:
            iteration = (*iteration, self.loop_iteration(loop_id, iteration))
        return iteration

    def latest_output(self, node_id: str) -> tuple[Iteration, bytes] | None:
        """The output of the node's highest iteration that has one."""
        found = self.output_iterations.get(node_id)
        if not found:
            return None
        return found[-1], self.outputs[(node_id, found[-1])]

    # -- changes ------------------------------------------------------------------------------

    def set_node(self, record: NodeRecord) -> NodeRecord:
        key = (record.node_id, record.iteration)
        if self.nodes.get(key) != record:
            self.nodes[key] = record
            self._nodes[key] = record
        return record

    def update_node(self, key: NodeKey, **changes: Any) -> NodeRecord:
        """Change fields of an existing node record."""
        return self.set_node(msgspec.structs.replace(self.nodes[key], **changes))

    def set_group(self, record: GroupRecord) -> None:
        key = (record.kind, record.key, record.iteration)
        if self.groups.get(key) != record:
            self.groups[key] = record
            self._groups[key] = record
            if record.kind == "skip":
                self.skip_marks.add(key)

    def set_attempt(self, key: NodeKey, record: AttemptRecord) -> None:
        self._attempts[(key, record.number)] = record

    def add_output(self, key: NodeKey, raw: bytes) -> None:
        node_id, iteration = key
        if key not in self.outputs:
            bisect.insort(self.output_iterations.setdefault(node_id, []), iteration)
        self.outputs[key] = raw
        self._outputs.append((node_id, iteration, raw))

    def set_approval(self, record: ApprovalRecord) -> None:
        key = (record.node_id, record.iteration)
        self.approvals[key] = record
        self._approvals[key] = record

    def set_signal(self, record: SignalRecord) -> None:
        key = (record.node_id, record.iteration)
        self.signals[key] = record
        self._signals[key] = record

    def add_frame(self, digest: str, raw: bytes) -> None:
        self._frames.append((digest, raw))

    def update_run(self, **changes: Any) -> None:
        """Change run-record fields (applied inside the commit to the record read there)."""
        self._run.update(changes)
        self.run = msgspec.structs.replace(self.run, **changes)

    def event(
        self,
        type: EventType,
        node_id: str | None = None,
        iteration: Iteration | None = None,
        /,
        **data: Any,
    ) -> None:
        """Stage an event; it commits with the change it describes."""
        self._events.append(
            NewEvent(
                type=type,
                node_id=node_id,
                iteration=iteration,
                at=now_iso(),
                data={k: v for k, v in data.items() if v is not None},
            )
        )

    def has_changes(self) -> bool:
        """Whether anything is staged for the next commit."""
        return bool(
            self._nodes
            or self._groups
            or self._attempts
            or self._outputs
            or self._approvals
            or self._signals
            or self._frames
            or self._events
            or self._run
        )

    def take_batch(self) -> Batch:
        """Everything staged since the last call, as one batch."""
        batch = Batch(
            run=self._run,
            nodes=list(self._nodes.values()),
            groups=list(self._groups.values()),
            attempts=list(self._attempts.values()),
            outputs=self._outputs,
            approvals=list(self._approvals.values()),
            signals=list(self._signals.values()),
            frames=self._frames,
            events=self._events,
        )
        self._nodes, self._groups, self._attempts, self._approvals = {}, {}, {}, {}
        self._signals = {}
        self._outputs, self._frames, self._events, self._run = [], [], [], {}
        return batch

    def restage(self, batch: Batch) -> None:
        """Stage a batch's records again (its run changes and events are dropped)."""
        for node in batch.nodes:
            self._nodes[(node.node_id, node.iteration)] = node
        for group in batch.groups:
            self._groups[(group.kind, group.key, group.iteration)] = group
        for attempt in batch.attempts:
            self._attempts[((attempt.node_id, attempt.iteration), attempt.number)] = attempt
        self._outputs.extend(batch.outputs)
        for approval in batch.approvals:
            self._approvals[(approval.node_id, approval.iteration)] = approval
        for delivered in batch.signals:
            self._signals[(delivered.node_id, delivered.iteration)] = delivered
        self._frames.extend(batch.frames)

    def snapshot(self) -> RunSnapshot:
        """The mirror as a snapshot (what is committed, once nothing is staged)."""
        return RunSnapshot(
            self.run, self.nodes, self.groups, self.outputs, self.approvals, self.signals
        )

    def adopt_run(self, run: RunRecord) -> None:
        """Take the run record a commit returned (inbox and lease as stored)."""
        self.run = run
