"""Time steps of the engine: start `Timer` nodes, and apply what is due (timers firing,
signal timeouts, gate reminders, escalations and deadlines) at the clock's "now".

Time is applied by whoever holds the run: the owner process while it is alive (its watcher
posts "time" when the next wake-up passes), else the next ``resume`` (or the worker). A
parked run records its next wake-up in ``RunRecord.wake_at`` so a worker finds it.
A deadline decides through the store's compare-and-set, like a person: exactly one wins.
"""

from __future__ import annotations

import msgspec

from smithers.compiler.graph import Node
from smithers.components.nodes import Signal
from smithers.components.policy import TimerFired, format_duration
from smithers.components.timer import Timer
from smithers.errors import AlreadyDecidedError, GateNotRequestedError
from smithers.runtime import clock
from smithers.runtime.lease import hostname, os_user
from smithers.runtime.policies import TIMEOUT_DECIDER, gate_due, next_gate_wake
from smithers.runtime.scheduler import Scheduler
from smithers.store.base import Decision, NodeKey
from smithers.store.records import ErrorInfo, NewEvent
from smithers.store.votes import allowed_deciders

__all__ = ["TimeSteps"]


class TimeSteps(Scheduler):
    """Timers, signal timeouts and the approval policies that move with time."""

    def _start_timer(self, node: Node, key: NodeKey) -> None:
        assert self.graph is not None
        element = self.graph.elements.get(node.id)
        assert isinstance(element, Timer)
        self._freeze(node.id)
        now = clock.now()
        due = element.until if element.until is not None else now + (element.duration or 0)
        due_iso = clock.format_iso(due)
        self._set(key, "waiting-timer", started_at=clock.format_iso(now), due_at=due_iso)
        self.state.event("timer.waiting", key[0], key[1], due_at=due_iso)
        self._wake_soon(due)
        if due <= now:
            self._fire(node, key)

    def _fire(self, node: Node, key: NodeKey) -> None:
        fired = clock.now_iso()
        self._output(key, msgspec.msgpack.encode(TimerFired(fired_at=fired)))
        self._set(key, "finished", due_at=None)
        self.state.event("timer.fired", key[0], key[1], fired_at=fired)
        self._terminal(node.id)

    def _wake_soon(self, at: float | None) -> None:
        if at is not None and (self.next_wake is None or at < self.next_wake):
            self.next_wake = at

    def _waiting(self, state: str) -> list[tuple[Node, NodeKey]]:
        assert self.graph is not None
        found = []
        for node in self.graph.nodes:
            key = (node.id, node.iteration)
            record = self.state.nodes.get(key)
            if record is not None and record.state == state:
                found.append((node, key))
        return found

    def _apply_time(self) -> None:
        """Apply everything due at the clock's now, then note the next wake-up."""
        if self.graph is None or self.failure is not None or self.cancelling:
            return
        now = clock.now()
        for node, key in self._waiting("waiting-timer"):
            due = self.state.nodes[key].due_at
            if due is not None and clock.parse_iso(due) <= now:
                self._fire(node, key)
        expiring = [
            (node, key)
            for node, key in self._waiting("waiting-signal")
            if (due := self.state.nodes[key].due_at) is not None and clock.parse_iso(due) <= now
        ]
        if expiring:
            self._reload_inbox()  # data that arrived in time wins over the timeout
            for node, key in expiring:
                if self.state.nodes[key].state == "waiting-signal":
                    self._expire_signal(node, key)
        for node, key in self._waiting("waiting-approval"):
            self._gate_time(node, key, now)
        self.next_wake = self._compute_wake()

    def _expire_signal(self, node: Node, key: NodeKey) -> None:
        assert self.graph is not None
        element = self.graph.elements.get(node.id)
        on_timeout = element.on_timeout if isinstance(element, Signal) else "fail"
        waited = format_duration(element.timeout or 0) if isinstance(element, Signal) else ""
        self.state.event("signal.expired", key[0], key[1], on_timeout=on_timeout, waited=waited)
        if on_timeout == "skip":
            self._skip(node, "timed-out")
            return
        message = f"Signal `{node.id}` received no data within {waited} (on_timeout='fail')"
        self._set(key, "failed", error=message, due_at=None)
        self.state.event("node.failed", key[0], key[1], error=message)
        self._fail(ErrorInfo(type="SignalTimeout", message=message, node_id=node.id))

    def _gate_time(self, node: Node, key: NodeKey, now: float) -> None:
        record = self.state.approvals.get(key)
        if record is None or record.status != "requested" or record.policy is None:
            return
        due = gate_due(record, now)
        at = clock.format_iso(now)
        changes: dict[str, int] = {}
        events: list[NewEvent] = []
        if due.escalated > record.escalated and not due.expired:
            changes["escalated"] = due.escalated
            widened = msgspec.structs.replace(record, escalated=due.escalated)
            events.append(
                NewEvent(
                    type="approval.escalated",
                    node_id=key[0],
                    iteration=key[1],
                    at=at,
                    data={
                        "step": due.escalated,
                        "approvers": list(allowed_deciders(widened) or ()),
                    },
                )
            )
        if due.reminders > record.reminders and not due.expired:
            changes["reminders"] = due.reminders
            events.append(
                NewEvent(
                    type="approval.reminder",
                    node_id=key[0],
                    iteration=key[1],
                    at=at,
                    data={"count": due.reminders, "deadline": record.deadline},
                )
            )
        if changes:
            updated = self.store.update_gate(
                self.run_id, key[0], key[1], changes, events, token=self.token
            )
            if updated is not None:
                self.state.approvals[key] = updated
        if due.expired:
            self._expire_gate(key)

    def _expire_gate(self, key: NodeKey) -> None:
        record = self.state.approvals[key]
        policy = record.policy or {}
        timeout = float(policy.get("timeout") or 0)
        decision = Decision(
            node_id=key[0],
            iteration=key[1],
            approved=policy.get("on_timeout") == "approve",
            note=f"no decision within {format_duration(timeout)}",
            decided_by=TIMEOUT_DECIDER,
            decided_at=clock.now_iso(),
            recorded_by=os_user(),
            recorded_on=hostname(),
            expired=True,
        )
        try:
            decided, _ = self.store.decide(self.run_id, decision)
        except (AlreadyDecidedError, GateNotRequestedError):
            self._reload_inbox()  # a person won the race: apply their decision
            return
        self.state.approvals[key] = decided
        self._resolve(key, decided)

    def _compute_wake(self) -> float | None:
        """The earliest time something waiting here is due."""
        times: list[float] = []
        for _, key in self._waiting("waiting-timer") + self._waiting("waiting-signal"):
            due = self.state.nodes[key].due_at
            if due is not None:
                times.append(clock.parse_iso(due))
        for _, key in self._waiting("waiting-approval"):
            record = self.state.approvals.get(key)
            if record is not None and record.status == "requested" and record.policy:
                wake = next_gate_wake(record)
                if wake is not None:
                    times.append(wake)
        return min(times) if times else None
