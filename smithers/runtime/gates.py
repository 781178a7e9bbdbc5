"""Gate steps of the engine: request approvals, apply decisions per ``on_deny``, withdraw
gates, and wait for or apply signal data from outside."""

from __future__ import annotations

import msgspec

from smithers.compiler.codec import check_value, decode_value, validate_value
from smithers.compiler.graph import Node
from smithers.components.nodes import Approval, ApprovalDecision, ApprovalRequest, Signal
from smithers.errors import ValidationError
from smithers.runtime import clock
from smithers.runtime.executor import error_text
from smithers.runtime.lease import now_iso
from smithers.runtime.policies import TIMEOUT_DECIDER, deadline_of, next_gate_wake
from smithers.runtime.scheduler import Scheduler
from smithers.store.base import NodeKey
from smithers.store.records import ApprovalRecord, ErrorInfo, GroupRecord, SignalRecord

__all__ = ["GateSteps"]


class GateSteps(Scheduler):
    """Approval gates and signals."""

    def _request(self, node: Node, key: NodeKey) -> None:
        assert self.graph is not None
        element = self.graph.elements[node.id]
        assert isinstance(element, Approval)
        try:
            if isinstance(element.request, ApprovalRequest):
                request = element.request
            else:
                kwargs = {param: self._dep_value(dep) for param, dep in element.needs.items()}
                request = validate_value(
                    element.request(**kwargs),
                    ApprovalRequest,
                    what=f"The request function of gate `{node.id}` returned a value that",
                )[0]
        except Exception as exc:
            message = (
                str(exc)
                if isinstance(exc, ValidationError)
                else f"The request function of gate `{node.id}` raised {error_text(exc)}"
            )
            self._set(key, "failed", error=message)
            self.state.event("node.failed", key[0], key[1], error=message)
            self._fail(ErrorInfo(type=type(exc).__name__, message=message, node_id=node.id))
            return
        payload = msgspec.to_builtins(request)
        earlier = self.state.approvals.get(key)
        previous = (*earlier.previous, msgspec.to_builtins(earlier)) if earlier else ()
        now = clock.now()
        policy = element.policy()
        record = ApprovalRecord(
            node_id=key[0],
            iteration=key[1],
            status="requested",
            request=payload,
            requested_at=clock.format_iso(now),
            on_deny=element.on_deny,
            previous=previous,
            policy=policy,
            deadline=deadline_of(policy, now),
        )
        self.state.set_approval(record)
        self._set(key, "waiting-approval", started_at=record.requested_at)
        self.state.event(
            "approval.requested",
            key[0],
            key[1],
            request=payload,
            on_deny=element.on_deny,
            policy=policy,
            deadline=record.deadline,
        )
        if policy is not None:
            self._wake_soon(next_gate_wake(record))
        self._freeze(node.id)

    def _withdraw(self, key: NodeKey, because: str) -> None:
        record = self.state.approvals.get(key)
        if record is not None and (record.policy or {}).get("quorum", 1) > 1:
            # Votes may have landed since the watcher last looked: keep them in the record.
            fresh = {(a.node_id, a.iteration): a for a in self.store.approvals(self.run_id)}
            record = fresh.get(key, record)
        if record is None or record.status != "requested":
            return
        self.state.set_approval(
            msgspec.structs.replace(
                record, status="withdrawn", withdrawn_at=now_iso(), withdrawn_because=because
            )
        )
        self.state.event("approval.withdrawn", key[0], key[1], reason=because)

    def _resolve(self, key: NodeKey, record: ApprovalRecord) -> None:
        """Apply a recorded decision to a waiting gate, per its ``on_deny``."""
        assert self.graph is not None and self.plan is not None
        node = self.graph.by_id.get(key[0])
        current = self.state.nodes.get(key)
        if (
            node is None
            or node.iteration != key[1]
            or current is None
            or (current.state != "waiting-approval")
        ):
            return
        decision = msgspec.convert(record.decision or {"approved": False}, ApprovalDecision)
        on_deny = node.props.get("on_deny", record.on_deny)
        who = decision.decided_by or "unknown"
        if (
            decision.decided_by == TIMEOUT_DECIDER
            and (record.policy or {}).get("on_timeout") == "fail"
        ):
            message = (
                f"Gate `{node.id}` was not decided by its deadline {record.deadline} "
                "(on_timeout='fail')"
            )
            self._set(key, "failed", error=message)
            self.state.event("node.failed", key[0], key[1], error=message)
            self._fail(ErrorInfo(type="ApprovalTimeout", message=message, node_id=node.id))
        elif decision.approved or on_deny == "continue":
            self._output(key, msgspec.msgpack.encode(decision))
            self._set(key, "finished")
            self.state.event("node.finished", key[0], key[1], approved=decision.approved)
            self._terminal(node.id)
        elif on_deny == "skip":
            self._set(key, "skipped", reason=f"denied by {who}")
            self.state.event("node.skipped", key[0], key[1], reason="denied", decided_by=who)
            self._mark_skip(node)
            self._terminal(node.id)
        else:
            note = f": {decision.note}" if decision.note else ""
            message = f"Gate `{node.id}` was denied by {who}{note}"
            self._set(key, "failed", error=message)
            self.state.event("node.failed", key[0], key[1], error=message)
            self._fail(ErrorInfo(type="ApprovalDenied", message=message, node_id=node.id))

    def _mark_skip(self, gate: Node) -> None:
        """on_deny="skip": the gate's later siblings and all under them are skipped."""
        assert self.plan is not None and self.graph is not None
        chain = self.plan.chain(gate.id)
        if not chain:
            return
        parent, index = chain[-1]
        self.state.set_group(
            GroupRecord(
                kind="skip",
                key=parent.path,
                iteration=parent.iteration,
                skip_after=index,
                gate=gate.id,
            )
        )
        for unit in self.plan.units:
            node = self.plan.node(unit)
            if node is None:
                if self._skip_mark(unit) is not None:
                    self._terminal(unit)
                continue
            key = (node.id, node.iteration)
            record = self.state.nodes.get(key)
            if (record is None or record.state == "pending") and self._skip_mark(unit):
                self._skip(node, f"denied: {gate.id}")

    def _await_signal(self, node: Node, key: NodeKey) -> None:
        self._freeze(node.id)
        delivered = self.state.signals.get(key)
        if delivered is not None:
            self._apply_signal(node, key, delivered)
            return
        element = self.graph.elements.get(node.id) if self.graph is not None else None
        due = None
        if isinstance(element, Signal) and element.timeout is not None:
            due = clock.now() + element.timeout
            self._wake_soon(due)
        due_iso = None if due is None else clock.format_iso(due)
        self._set(key, "waiting-signal", started_at=now_iso(), due_at=due_iso)
        self.state.event("signal.waiting", key[0], key[1], due_at=due_iso)

    def _apply_signal(self, node: Node, key: NodeKey, delivered: SignalRecord) -> None:
        assert self.graph is not None
        if delivered.rejected is not None:
            return  # already refused; the node waits for a corrected delivery
        tp = self.view.types.get(node.id)
        try:
            _, raw = check_value(decode_value(delivered.data), tp)
        except ValueError as exc:
            # Bad data must not poison the run: refuse this delivery, keep waiting.
            reason = (
                f"Data for signal `{node.id}` does not match `{node.output_type}`: {exc}; "
                f"deliver it again with `smithers signal {self.run_id} --node {node.id}`."
            )
            self.state.set_signal(msgspec.structs.replace(delivered, rejected=reason))
            if self.state.nodes.get(key) is None or self.state.nodes[key].state == "pending":
                self._set(key, "waiting-signal", started_at=now_iso())
                self.state.event("signal.waiting", key[0], key[1])
            self.state.event("signal.rejected", key[0], key[1], error=reason)
            return
        self._output(key, raw)
        self._set(key, "finished", due_at=None)
        self.state.event("node.finished", key[0], key[1])
        self._terminal(node.id)

    def _reload_inbox(self) -> None:
        """Read decisions, signals and cancel requests that arrived from other processes."""
        run = self.store.get_run(self.run_id)
        if run is None:
            return
        self.seen_inbox = run.inbox
        if run.cancel_requested and not self.cancelling:
            self.cancelling = True
            self._abandon("cancelled", "the run was cancelled", state="cancelled")
            for timer in self.timers.values():
                timer.cancel()
            self.timers.clear()
            self.retry_ready.clear()
        for record in self.store.approvals(self.run_id):
            self.state.approvals[(record.node_id, record.iteration)] = record
        for delivered in self.store.signals(self.run_id):
            key = (delivered.node_id, delivered.iteration)
            if self.state.signals.get(key) != delivered:  # new, or a corrected delivery
                self.state.signals[key] = delivered
        self._apply_arrivals()

    def _apply_arrivals(self) -> None:
        """Apply decisions and signal data to the gates and signals waiting for them."""
        if self.graph is None:
            return
        for key, record in list(self.state.approvals.items()):
            if record.status in ("approved", "denied"):
                self._resolve(key, record)
        for key, delivered in list(self.state.signals.items()):
            current = self.state.nodes.get(key)
            node = self.graph.by_id.get(key[0])
            if node is not None and current is not None and current.state == "waiting-signal":
                self._apply_signal(node, key, delivered)
