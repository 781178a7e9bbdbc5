"""Recovery steps of the engine: checks before a resume, attempts cut off by a crash or a
signal, and giving the lease back."""

from __future__ import annotations

import os
import time
from typing import Any, Literal

import msgspec

from smithers.compiler.graph import Graph
from smithers.errors import OutputTypeChangedError
from smithers.runtime.compat import (
    changed_message,
    changed_refusal,
    check_outputs,
    incompatible,
    source_changed,
)
from smithers.runtime.lease import now_iso
from smithers.runtime.scheduler import Scheduler
from smithers.store.base import Batch
from smithers.store.records import AttemptRecord, ErrorInfo, EventType

__all__ = ["RecoverySteps"]


class RecoverySteps(Scheduler):
    """Resume checks, interruptions and the lease."""

    def _verify(self, old: Graph | None) -> None:
        """On resume: refuse outputs that no longer decode and incompatible source changes."""
        graph = self.graph
        if graph is None or self.failure is not None:
            return
        try:
            check_outputs(graph, self.state.outputs, self.view.types)
        except OutputTypeChangedError:
            self._release()
            raise
        ref = self.state.run.definition
        current = source_changed(self.state.run)
        if ref is None or old is None or current is None:
            return
        changed = incompatible(old, graph, self.state.nodes)
        if changed and not self.accept_change:
            self._release()
            raise changed_refusal(self.run_id, changed)
        self.state.update_run(definition=msgspec.structs.replace(ref, source_hash=current))
        self.state.event(
            "workflow.changed",
            old_hash=ref.source_hash,
            new_hash=current,
            changed=changed or None,
            accepted=bool(changed) or None,
            message=changed_message(changed),
        )

    def _release(self, *, quietly: bool = False) -> None:
        """Give the lease back without changing anything else (once)."""
        if self.released:
            return
        self.state.take_batch()
        self._stop_watch()
        try:
            self.store.commit(self.run_id, Batch(release_lease=True), token=self.token)
        except Exception:
            if not quietly:
                raise
        self.released = True

    def _recover(self) -> None:
        """Attempts cut off by a dead owner: recorded `interrupted`; the node runs again."""
        ended = {(a.node_id, a.iteration, a.number) for a in self._recover_attempts}
        for key, record in list(self.state.nodes.items()):
            if record.state != "in-progress":
                continue
            if record.attempts and (*key, record.attempts) not in ended:
                # Its attempt never got an end record: the owner died while it ran.
                self.state.set_attempt(
                    key,
                    AttemptRecord(
                        node_id=key[0],
                        iteration=key[1],
                        number=record.attempts,
                        started_at=record.attempt_started_at or record.started_at or now_iso(),
                        ended_at=now_iso(),
                        outcome="interrupted",
                        error="the process running it died",
                    ),
                )
                self.state.event("node.interrupted", key[0], key[1], attempt=record.attempts)
                record = self.state.update_node(key, interrupted=record.interrupted + 1)
            if record.interrupted >= 3:
                message = f"the process died {record.interrupted} times running `{key[0]}`"
                self._set(key, "failed", error=message)
                self.state.event("node.failed", key[0], key[1], error=message)
                node = self.graph.by_id.get(key[0]) if self.graph else None
                if node is not None and node.props.get("continue_on_fail"):
                    self._terminal(key[0])
                else:
                    self._fail(ErrorInfo(type="ProcessDied", message=message, node_id=key[0]))
            else:
                self._set(key, "pending")
                self.dirty.add(key[0])

    def _interrupt(self) -> None:
        """SIGINT/SIGTERM: in-flight attempts become `interrupted`, the lease is released."""
        self._abandon("interrupted", "interrupted by a signal", state="pending")
        for key in list(self.timers) + list(self.retry_ready):
            self._set(key, "pending")
        self.state.event("run.interrupted", pid=os.getpid())
        self._stop_watch()
        self._commit(release=True)

    def _abandon(
        self, outcome: Literal["interrupted", "cancelled"], error: str, *, state: Any
    ) -> None:
        """Give up on in-flight attempts: recorded with ``outcome``; late results dropped."""
        for key, attempt in list(self.inflight.items()):
            attempt.settled = True
            if attempt.timer is not None:
                attempt.timer.cancel()
            ms = round((time.perf_counter() - attempt.started) * 1000, 3)
            self._end_attempt(attempt, outcome, ms, error)
            self._set(key, state, reason=None if state == "pending" else outcome)
            kind: EventType = "node.interrupted" if outcome == "interrupted" else "node.cancelled"
            self.state.event(kind, key[0], key[1], attempt=attempt.number)
        self.inflight.clear()
        self.running_total = 0
        self.running_in = {}
