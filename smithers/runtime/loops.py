"""Loop steps of the engine: start a loop instance, check ``until`` at each boundary, and
move to the next iteration or finish."""

from __future__ import annotations

from typing import Any

from smithers.compiler.context import Context
from smithers.compiler.graph import Group
from smithers.compiler.render import input_decoder
from smithers.runtime.executor import error_text
from smithers.runtime.scheduler import Scheduler
from smithers.store.records import ErrorInfo, GroupRecord

__all__ = ["LoopSteps"]


class LoopSteps(Scheduler):
    """Loop instances and their iterations."""

    def _examine_loop(self, loop_id: str) -> None:
        assert self.plan is not None and self.graph is not None
        group = self.plan.loops[loop_id]
        if group.skipped or self._skip_mark(loop_id) is not None:
            return
        outer, at = group.iteration[:-1], group.iteration[-1]
        record = self.state.loop(loop_id, outer)
        phase = "pending" if record is None else record.loop_state
        if phase == "done":
            return
        if phase == "pending":
            if not self._enclosing_loops_running(group.loops[:-1]):
                return  # a nested loop starts only inside a running iteration of its parent
            if not all(self._is_terminal(src) for src in self.plan.after.get(loop_id, ())):
                return
            until = self._until(loop_id)
            if until is None:
                return
            if until:
                self._loop_done(loop_id, ended_early=True)
                return
            self._mark_loop(group, "running")
            self.dirty.update(self.plan.loop_entries.get(loop_id, ()))
            if group.exits:
                return
        if not group.exits:
            # Nothing in the body can run (all skipped): record this iteration's nodes before
            # the loop moves on, or the next render would drop them unrecorded.
            for unit in self.plan.loop_entries.get(loop_id, ()):
                self._examine(unit)
        if not all(self._is_terminal(unit) for unit in group.exits):
            return
        until = self._until(loop_id)
        if until is None:
            return
        if until:
            self._loop_done(loop_id)
        elif at + 1 >= (group.max_iterations or 1):
            self.state.event(
                "loop.max-reached",
                loop_id,
                group.iteration[:-1],
                iterations=at + 1,
                max_iterations=group.max_iterations,
                on_max_reached=group.on_max_reached,
            )
            if group.on_max_reached == "fail":
                self._fail(
                    ErrorInfo(
                        type="LoopError",
                        message=f"Loop `{loop_id}` reached max_iterations={group.max_iterations} "
                        "with `until` still false; raise max_iterations or use "
                        "on_max_reached='return-last'.",
                    )
                )
            else:
                self._loop_done(loop_id)
        else:
            self._mark_loop(group, "running", at=at + 1)
            self.need_render = True

    def _until(self, loop_id: str) -> bool | None:
        assert self.plan is not None and self.graph is not None
        group = self.plan.loops[loop_id]
        if group.until is not None:
            return group.until
        until = self.graph.loop_elements[loop_id].until
        assert callable(until)
        ctx = Context(
            run_id=self.run_id,
            source=self.view,
            input_decode=input_decoder(self.definition, self.input_raw),
        )
        ctx.seal()
        try:
            return bool(until(ctx))
        except Exception as exc:
            self._fail(
                ErrorInfo(
                    type=type(exc).__name__,
                    message=f"The until of loop `{loop_id}` raised {error_text(exc)}",
                )
            )
            return None

    def _loop_done(self, loop_id: str, *, ended_early: bool = False) -> None:
        assert self.plan is not None
        group = self.plan.loops[loop_id]
        self._mark_loop(group, "done")
        if ended_early:  # `until` held before the first iteration: the body never runs
            for node in self.plan.graph.nodes:
                if loop_id in node.loops and (node.id, node.iteration) not in self.state.nodes:
                    self._skip(node, "loop-ended")
            for inner in self.plan.loops.values():
                if loop_id in inner.loops[:-1]:  # nested loops end with it, never started
                    self._mark_loop(inner, "done")
        self._terminal(loop_id)

    def _mark_loop(self, group: Group, state: Any, *, at: int | None = None) -> None:
        """Record a loop instance's state (at its current iteration unless ``at`` is given)."""
        assert group.name is not None
        self.state.set_group(
            GroupRecord(
                kind="loop",
                key=group.name,
                iteration=group.iteration[:-1],
                loop_iteration=group.iteration[-1] if at is None else at,
                loop_state=state,
                loops=group.loops[:-1],
            )
        )
