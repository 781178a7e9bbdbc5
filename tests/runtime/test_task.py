"""Task: value= payloads, sync and async bodies, validation into the output type, retries,
backoff, timeouts (abandoned sync attempts, cancelled async ones), TaskInfo and skip_if."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any, TypedDict

import attrs
import msgspec
import pytest

import smithers
from smithers import Context, Loop, Sequence, Task, TaskInfo, Workflow
from smithers.store import KVStore
from tests.runtime.helpers import Recorder, attempts, events, outputs, reasons, run, states

WAIT_SECONDS = 10.0


class Build(msgspec.Struct):
    version: str
    plan: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


@attrs.define
class Release:
    name: str
    tags: list[str]


class Summary(TypedDict):
    count: int
    label: str


def single(output: Any, **props: Any) -> smithers.WorkflowDefinition:
    """A workflow of one task `t` with these props."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="t", output=output, **props), name="flow")

    return flow


# -- payloads and bodies --------------------------------------------------------------------


def test_value_payload_becomes_the_output(store: KVStore) -> None:
    """Task(value=...) commits the payload as the output, without calling anything."""
    result = run(single(Build, value=Build("1.0", "ship")), store)
    assert result.status == "finished"
    assert result.outputs == {"t": Build("1.0", "ship")}
    assert attempts(store, "t") == [(1, "ok")]


def test_value_payload_none_is_a_valid_output(store: KVStore) -> None:
    """value=None is a payload like any other: the node finishes with None as its output."""
    result = run(single(None, value=None), store)
    assert result.status == "finished"
    assert result.outputs == {"t": None}
    assert outputs(store) == {("t", ()): None}


def test_sync_run_result_becomes_the_output(store: KVStore) -> None:
    """A sync run callable's return value is the output, and it runs off the event loop's
    thread."""
    threads = Recorder()

    def body() -> int:
        threads.add(threading.current_thread() is threading.main_thread())
        return 42

    result = run(single(int, run=body), store)
    assert result.status == "finished"
    assert result.outputs == {"t": 42}
    assert threads.items == [False]


def test_async_run_result_becomes_the_output(store: KVStore) -> None:
    """An async run callable is awaited and its result is the output."""

    async def body() -> list[int]:
        await asyncio.sleep(0)
        return [1, 2, 3]

    result = run(single(list[int], run=body), store)
    assert result.status == "finished"
    assert result.outputs == {"t": [1, 2, 3]}


def test_async_tasks_receive_needs_and_task_info(store: KVStore) -> None:
    """An async run callable gets its needs and TaskInfo like a sync one."""

    async def body(base: int, task: TaskInfo) -> str:
        return f"{task.node_id}:{base}:{task.attempt}"

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="base", output=int, value=5),
            Task(id="t", output=str, run=body, needs={"base": "base"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["t"] == "t:5:1"


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "returned", "expected"),
    [
        (Build, {"version": "2.0", "plan": "p"}, Build("2.0", "p")),
        (Point, {"x": 1, "y": 2}, Point(1, 2)),
        (Point, Point(3, 4), Point(3, 4)),
        (Release, Release("r", ["a"]), Release("r", ["a"])),
        (Release, {"name": "r", "tags": []}, Release("r", [])),
        (Summary, {"count": 1, "label": "x"}, {"count": 1, "label": "x"}),
        (int, 7, 7),
        (list[int], (1, 2), [1, 2]),
        (dict[str, float], {"a": 1}, {"a": 1.0}),
    ],
)
def test_result_is_validated_into_the_output_type(
    store: KVStore, output: Any, returned: Any, expected: Any
) -> None:
    """A run's return value is validated into Struct, dataclass, attrs, TypedDict and builtin
    output types, and the output is an instance of that type."""
    result = run(single(output, run=lambda: returned), store)
    assert result.status == "finished"
    assert result.outputs["t"] == expected
    assert type(result.outputs["t"]) is type(expected)


def test_a_value_that_does_not_match_fails_the_node_naming_node_and_field(store: KVStore) -> None:
    """A result that does not match the output type fails the node and the run with a
    ValidationError naming the node and the field path."""
    result = run(single(Build, run=lambda: {"version": 2, "plan": "p"}), store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "ValidationError"
    assert result.error.node_id == "t"
    assert "`t`" in result.error.message
    assert "$.version" in result.error.message
    assert states(store) == {("t", ()): "failed"}
    assert attempts(store, "t") == [(1, "failed")]
    assert outputs(store) == {}


def test_a_bad_value_payload_fails_the_node(store: KVStore) -> None:
    """A value= payload that does not match the output type fails the node, naming the path."""
    result = run(single(list[int], value=[1, "two"]), store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "ValidationError"
    assert result.error.node_id == "t"
    assert "$[1]" in result.error.message


def test_a_validation_failure_is_retried(store: KVStore) -> None:
    """A result that fails validation counts as a failed attempt and is retried."""

    def body(task: TaskInfo) -> Any:
        return "wrong" if task.attempt == 1 else 3

    result = run(single(int, run=body, retries=1), store)
    assert result.status == "finished"
    assert result.outputs == {"t": 3}
    assert attempts(store, "t") == [(1, "failed"), (2, "ok")]


def test_an_unencodable_result_fails_the_node(store: KVStore) -> None:
    """A result that cannot be encoded at all fails the node with a ValidationError."""
    result = run(single(int, run=lambda: object()), store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "ValidationError"
    assert result.error.node_id == "t"


# -- retries and backoff --------------------------------------------------------------------


def test_retries_allow_n_plus_one_attempts(store: KVStore) -> None:
    """retries=2 allows three attempts; a task that succeeds on the third finishes, and every
    attempt is recorded with its number, outcome and error text."""
    calls = Recorder()

    def body(task: TaskInfo) -> str:
        calls.add(task.attempt)
        if task.attempt < 3:
            raise ValueError(f"flake {task.attempt}")
        return "ok"

    result = run(single(str, run=body, retries=2), store)
    assert result.status == "finished"
    assert result.outputs == {"t": "ok"}
    assert calls.items == [1, 2, 3]
    records = store.attempts("r")
    assert [(a.number, a.outcome) for a in records] == [(1, "failed"), (2, "failed"), (3, "ok")]
    assert records[0].error is not None
    assert "ValueError: flake 1" in records[0].error
    assert records[1].error is not None
    assert "ValueError: flake 2" in records[1].error
    assert records[2].error is None
    assert all(a.started_at and a.ended_at for a in records)
    node = store.load("r").nodes[("t", ())]  # type: ignore[union-attr]
    assert (node.state, node.attempts, node.failures) == ("finished", 3, 2)


def test_retries_exhausted_fail_the_node_and_the_run(store: KVStore) -> None:
    """A task that fails every one of its retries+1 attempts fails, and so does the run."""
    calls = Recorder()

    def body() -> int:
        calls.add(1)
        raise RuntimeError("always")

    result = run(single(int, run=body, retries=1), store)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.node_id) == ("RuntimeError", "t")
    assert "always" in result.error.message
    assert len(calls.items) == 2
    assert attempts(store, "t") == [(1, "failed"), (2, "failed")]
    assert [e for e in events(store) if e[1] == "t"] == [
        ("node.started", "t"),
        ("node.retrying", "t"),
        ("node.started", "t"),
        ("node.failed", "t"),
    ]


def test_no_retries_means_one_attempt(store: KVStore) -> None:
    """The default retries=0 runs a failing task once."""
    calls = Recorder()

    def body() -> int:
        calls.add(1)
        raise RuntimeError("once")

    assert run(single(int, run=body), store).status == "failed"
    assert len(calls.items) == 1


def test_numeric_backoff_doubles_between_retries(store: KVStore) -> None:
    """backoff=0.01 waits 0.01, then 0.02, then 0.04 before retries 1, 2 and 3."""

    def body(task: TaskInfo) -> int:
        if task.attempt < 4:
            raise RuntimeError("again")
        return task.attempt

    result = run(single(int, run=body, retries=3, backoff=0.01), store)
    assert result.status == "finished"
    delays = [e.data["delay"] for e in store.events(run_id="r") if e.type == "node.retrying"]
    assert delays == [0.01, 0.02, 0.04]
    assert attempts(store, "t") == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "ok")]


def test_list_backoff_uses_each_delay_then_repeats_the_last(store: KVStore) -> None:
    """backoff=[0.01, 0.02] waits 0.01, then 0.02, then 0.02 again."""

    def body(task: TaskInfo) -> int:
        if task.attempt < 4:
            raise RuntimeError("again")
        return 0

    result = run(single(int, run=body, retries=3, backoff=[0.01, 0.02]), store)
    assert result.status == "finished"
    delays = [e.data["delay"] for e in store.events(run_id="r") if e.type == "node.retrying"]
    assert delays == [0.01, 0.02, 0.02]


def test_no_backoff_retries_at_once(store: KVStore) -> None:
    """Without backoff every retry is scheduled with a zero delay."""

    def body(task: TaskInfo) -> int:
        if task.attempt < 3:
            raise RuntimeError("again")
        return 0

    assert run(single(int, run=body, retries=2), store).status == "finished"
    delays = [e.data["delay"] for e in store.events(run_id="r") if e.type == "node.retrying"]
    assert delays == [0.0, 0.0]


def test_retrying_node_does_not_let_the_sequence_move_on(store: KVStore) -> None:
    """While a task waits for its retry, the next Sequence child does not start."""

    def body(task: TaskInfo) -> int:
        if task.attempt == 1:
            raise RuntimeError("first")
        return 1

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="t", output=int, run=body, retries=1, backoff=0.01),
                Task(id="next", output=int, value=2),
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    log = events(store)
    assert log.index(("node.finished", "t")) < log.index(("node.started", "next"))


# -- timeouts -------------------------------------------------------------------------------


def test_sync_timeout_abandons_the_attempt_and_discards_its_late_result(store: KVStore) -> None:
    """A sync attempt past its timeout is recorded `timed-out`; the retry's result is the
    output even though the abandoned attempt returned (late) before the retry did."""
    release_first = threading.Event()
    first_returned = threading.Event()

    def body(task: TaskInfo) -> str:
        if task.attempt == 1:
            assert release_first.wait(WAIT_SECONDS), "attempt 1 was never released"
            first_returned.set()
            return "late first attempt"
        release_first.set()
        assert first_returned.wait(WAIT_SECONDS), "attempt 1 never returned"
        return "retry"

    # Spare retries only so that a retry slowed past the timeout by a loaded machine cannot
    # fail the test; on a healthy run attempt 2 returns at once.
    result = run(single(str, run=body, retries=3, timeout=0.2), store)
    assert result.status == "finished"
    assert result.outputs == {"t": "retry"}
    assert outputs(store) == {("t", ()): "retry"}
    records = store.attempts("r")
    assert (records[0].number, records[0].outcome) == (1, "timed-out")
    assert records[0].error is not None
    assert "timed out after 0.2s" in records[0].error
    assert [a.outcome for a in records[1:-1]] == ["timed-out"] * (len(records) - 2)
    assert records[-1].outcome == "ok"


def test_sync_timeout_without_retries_fails_the_run(store: KVStore) -> None:
    """A timed-out attempt with no retries left fails the node and the run with a
    TimeoutError."""
    release = threading.Event()

    def body() -> int:
        release.wait(WAIT_SECONDS)
        return 1

    try:
        result = run(single(int, run=body, timeout=0.05), store)
    finally:
        release.set()
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.node_id) == ("TimeoutError", "t")
    assert attempts(store, "t") == [(1, "timed-out")]
    assert outputs(store) == {}


def test_async_timeout_cancels_the_attempt(store: KVStore) -> None:
    """An async attempt past its timeout is cancelled and recorded `timed-out`; the retry
    runs and its result is the output."""
    seen = Recorder()

    async def body(task: TaskInfo) -> str:
        if task.attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.add("cancelled")
                raise
        return "second"

    result = run(single(str, run=body, retries=1, timeout=0.05), store)
    assert result.status == "finished"
    assert result.outputs == {"t": "second"}
    assert seen.items == ["cancelled"]
    assert attempts(store, "t") == [(1, "timed-out"), (2, "ok")]


def test_a_task_within_its_timeout_finishes(store: KVStore) -> None:
    """A task that returns before its timeout finishes normally."""
    result = run(single(int, run=lambda: 1, timeout=WAIT_SECONDS), store)
    assert result.status == "finished"
    assert attempts(store, "t") == [(1, "ok")]


# -- TaskInfo -------------------------------------------------------------------------------


def test_task_info_numbers_attempts_and_keeps_the_idempotency_key(store: KVStore) -> None:
    """TaskInfo.attempt counts attempts from 1 while idempotency_key stays the same."""
    infos = Recorder()

    def body(task: TaskInfo) -> int:
        infos.add(msgspec.structs.replace(task, artifact_putter=None))  # a closure per run
        if task.attempt < 3:
            raise RuntimeError("again")
        return 0

    assert run(single(int, run=body, retries=2), store, run_id="run-7").status == "finished"
    assert infos.items == [
        TaskInfo(run_id="run-7", node_id="t", iteration=(), attempt=n, idempotency_key="run-7/t")
        for n in (1, 2, 3)
    ]


def test_task_info_inside_loops_carries_the_iteration(store: KVStore) -> None:
    """Inside loops, TaskInfo.iteration is the iteration tuple and the idempotency key differs
    per iteration."""
    infos = Recorder()

    def body(task: TaskInfo) -> int:
        infos.add((task.iteration, task.idempotency_key))
        return 0

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Loop(Task(id="t", output=int, run=body), id="in", until=False, max_iterations=2),
                id="out",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert infos.items == [
        ((0, 0), "r/t@0.0"),
        ((0, 1), "r/t@0.1"),
        ((1, 0), "r/t@1.0"),
        ((1, 1), "r/t@1.1"),
    ]


# -- skip_if --------------------------------------------------------------------------------


def test_skip_if_skips_the_task_without_running_it(store: KVStore) -> None:
    """Task(skip_if=True) is skipped with reason skip_if and never called."""
    calls = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="t", output=int, run=lambda: calls.add(1) or 1, skip_if=True),
            Task(id="u", output=int, value=2),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert calls.items == []
    assert result.outputs == {"u": 2}
    assert states(store) == {("t", ()): "skipped", ("u", ()): "finished"}
    assert reasons(store)[("t", ())] == "skip_if"
    assert ("node.skipped", "t") in events(store)


def test_skip_if_on_a_group_skips_everything_under_it(store: KVStore) -> None:
    """skip_if on a Sequence skips every node under it, nested groups included."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="a", output=int, value=1),
                smithers.Parallel(Task(id="b", output=int, value=2)),
                skip_if=True,
            ),
            Task(id="c", output=int, value=3),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert states(store) == {("a", ()): "skipped", ("b", ()): "skipped", ("c", ()): "finished"}


def test_skip_if_computed_from_an_output_skips_the_task(store: KVStore) -> None:
    """skip_if computed by the build function from an earlier output takes effect once that
    output exists."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        cached = ctx.output_maybe("cached")
        return Workflow(
            Task(id="cached", output=bool, run=lambda: True),
            Task(id="compute", output=int, value=1, skip_if=bool(cached)),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert states(store) == {("cached", ()): "finished", ("compute", ()): "skipped"}


def test_a_sync_callable_returning_an_awaitable_is_awaited(store: KVStore) -> None:
    """A sync run callable that returns a coroutine has it awaited; the awaited value is the
    output."""

    async def later(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    result = run(single(int, run=lambda: later(21)), store)
    assert result.status == "finished"
    assert result.outputs == {"t": 42}


def test_an_async_failure_is_retried_and_recorded(store: KVStore) -> None:
    """An async body that raises is a failed attempt, retried like a sync one."""

    async def body(task: TaskInfo) -> int:
        if task.attempt == 1:
            raise ValueError("async flake")
        return 5

    result = run(single(int, run=body, retries=1), store)
    assert result.status == "finished"
    assert result.outputs == {"t": 5}
    records = store.attempts("r")
    assert [(a.number, a.outcome) for a in records] == [(1, "failed"), (2, "ok")]
    assert records[0].error is not None
    assert "ValueError: async flake" in records[0].error


def test_a_none_output_is_passed_to_tasks_that_need_it(store: KVStore) -> None:
    """A finished node whose output is None satisfies needs, and None is passed on."""
    seen = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="nothing", output=None, run=lambda: None),
            Task(
                id="reader", output=str, run=lambda v: seen.add(v) or "ok", needs={"v": "nothing"}
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert seen.items == [None]
    assert result.outputs == {"nothing": None, "reader": "ok"}
