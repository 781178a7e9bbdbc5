"""Durable node components: Task, Approval and Signal props and errors."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from smithers import Approval, ApprovalDecision, ApprovalRequest, Signal, Task, TaskInfo
from smithers.errors import DefinitionError

EXACTLY_ONE = re.escape("pass exactly one of run=callable or value=payload.")


# -- Task: construction ------------------------------------------------------------------------


def test_task_with_value_keeps_its_props() -> None:
    """A value task stores its payload, output type and defaults."""
    t = Task(id="t", output=dict, value={"k": 1})
    assert (t.id, t.output, t.run, t.value) == ("t", dict, None, {"k": 1})
    assert dict(t.needs) == {}
    assert (t.retries, t.backoff, t.timeout, t.skip_if, t.continue_on_fail, t.label) == (
        0,
        None,
        None,
        False,
        False,
        None,
    )


def test_task_value_none_counts_as_a_value() -> None:
    """value=None is a payload (None), not a missing value."""
    t = Task(id="t", output=type(None), value=None)
    assert t.value is None
    assert t.run is None


def test_task_with_run_keeps_the_callable_uncalled() -> None:
    """A run task keeps its callable and never calls it at construction."""
    calls: list[str] = []

    def run() -> int:
        calls.append("run")
        return 1

    t = Task(id="t", output=int, run=run)
    assert t.run is run
    assert calls == []


def test_task_props_are_normalised() -> None:
    """retries, backoff, timeout and label are stored checked and normalised."""
    t = Task(
        id="t",
        output=int,
        value=1,
        retries=2,
        backoff=[1, 2.5],
        timeout=3,
        continue_on_fail=True,
        skip_if=True,
        label="Build it",
    )
    assert t.retries == 2
    assert t.backoff == (1.0, 2.5)
    assert t.timeout == 3.0
    assert isinstance(t.timeout, float)
    assert (t.continue_on_fail, t.skip_if, t.label) == (True, True, "Build it")
    assert Task(id="t", output=int, value=1, backoff=2).backoff == 2.0
    assert Task(id="t", output=int, value=1, backoff=0).backoff == 0.0


def test_task_needs_are_passed_to_run() -> None:
    """run may accept exactly the needs as keyword arguments."""

    def run(build: object, plan: object) -> int:
        return 1

    t = Task(id="t", output=int, run=run, needs={"build": "b", "plan": "p"})
    assert dict(t.needs) == {"build": "b", "plan": "p"}


def test_task_run_may_declare_task_info() -> None:
    """A run that declares `task` is accepted without `task` in needs."""

    def run(build: object, task: TaskInfo) -> int:
        return 1

    t = Task(id="t", output=int, run=run, needs={"build": "b"})
    assert t.wants_task is True
    assert Task(id="u", output=int, run=lambda: 1).wants_task is False


def test_task_run_with_kwargs_accepts_any_needs() -> None:
    """A run taking **kwargs accepts any needs."""
    t = Task(id="t", output=int, run=lambda **kw: 1, needs={"a": "x", "b": "y"})
    assert set(t.needs) == {"a", "b"}


def test_task_run_may_have_defaults_not_in_needs() -> None:
    """Optional run parameters need not be in needs."""
    t = Task(id="t", output=int, run=lambda extra=1: extra)
    assert dict(t.needs) == {}


def test_task_async_run_is_recognised() -> None:
    """An async run is accepted and flagged as async."""

    async def run() -> int:
        return 1

    assert Task(id="t", output=int, run=run).is_async is True
    assert Task(id="u", output=int, run=lambda: 1).is_async is False


def test_task_accepts_callable_objects_and_partials() -> None:
    """Any callable works as run: partials and objects with __call__."""

    class Runner:
        def __call__(self, x: int) -> int:
            return x

    def add(a: int, b: int) -> int:
        return a + b

    assert Task(id="a", output=int, run=Runner(), needs={"x": "n"}).run is not None
    assert Task(id="b", output=int, run=functools.partial(add, 1), needs={"b": "n"}).run


# -- Task: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("node_id", ["", "a b", "x" * 129, None, 1])
def test_task_refuses_a_bad_id(node_id: Any) -> None:
    """A task id must be a valid id."""
    with pytest.raises(DefinitionError, match=r"^Task got id=.*; ids must match"):
        Task(id=node_id, output=int, value=1)


def test_task_refuses_both_run_and_value() -> None:
    """run and value together are refused."""
    with pytest.raises(
        DefinitionError, match=rf"^Task\(id='t'\) got both run and value; {EXACTLY_ONE}"
    ):
        Task(id="t", output=int, run=lambda: 1, value=1)


def test_task_refuses_neither_run_nor_value() -> None:
    """A task with neither run nor value is refused."""
    with pytest.raises(
        DefinitionError, match=rf"^Task\(id='t'\) got neither run nor value; {EXACTLY_ONE}"
    ):
        Task(id="t", output=int)


@pytest.mark.parametrize("run", [5, "fn", [lambda: 1]])
def test_task_refuses_a_non_callable_run(run: Any) -> None:
    """run must be callable."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Task\(id='t'\) got run={re.escape(repr(run))}; pass a callable \(sync or async\)",
    ):
        Task(id="t", output=int, run=run)


@pytest.mark.parametrize("needs", [["a"], "a", ("x", "a"), 5])
def test_task_needs_must_be_a_mapping(needs: Any) -> None:
    """needs must be a dict of parameter name to node id."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Task\(id='t'\) got needs={re.escape(repr(needs))}; "
        "pass a dict of parameter name to node id",
    ):
        Task(id="t", output=int, value=1, needs=needs)


@pytest.mark.parametrize("key", ["task", "1x", "a-b", "", 3])
def test_task_needs_keys_are_identifiers_other_than_task(key: Any) -> None:
    """A needs key must be a Python identifier and not `task`."""
    with pytest.raises(
        DefinitionError,
        match=rf"the key {re.escape(repr(key))} must be a Python identifier other than `task`",
    ):
        Task(id="t", output=int, value=1, needs={key: "a"})


def test_task_needs_param_not_accepted_by_run_is_refused() -> None:
    """A needs key that run does not accept is refused, naming the parameter."""
    with pytest.raises(
        DefinitionError,
        match=r"^Task\(id='t'\) got run=.*; it must accept the keyword argument `plan` named in "
        "needs",
    ):
        Task(id="t", output=int, run=lambda build: 1, needs={"build": "b", "plan": "p"})


def test_task_required_param_not_in_needs_is_refused() -> None:
    """A required run parameter that is not in needs is refused, naming it and the fix."""
    with pytest.raises(
        DefinitionError,
        match=r"^Task\(id='t'\) got run=.*; its required parameter `plan` is not in needs or "
        r"`task`; add it to needs or give it a default\.$",
    ):
        Task(id="t", output=int, run=lambda build, plan: 1, needs={"build": "b"})


def test_task_required_positional_only_param_is_refused() -> None:
    """A positional-only parameter can never be passed, so it is refused when required."""

    def run(x: int, /) -> int:
        return x

    with pytest.raises(DefinitionError, match="its required parameter `x` is not in needs"):
        Task(id="t", output=int, run=run)


@pytest.mark.parametrize("retries", [-1, True, 1.0, "2", None])
def test_task_retries_must_be_a_non_negative_int(retries: Any) -> None:
    """retries refuses negatives, bools and non-ints."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Task\(id='t'\) got retries={re.escape(repr(retries))}; pass an int >= 0\.$",
    ):
        Task(id="t", output=int, value=1, retries=retries)


@pytest.mark.parametrize(
    "backoff", [-1, float("nan"), float("inf"), True, [], [1, -2], [1, "x"], [True], "1", {1: 2}]
)
def test_task_backoff_must_be_seconds_or_a_list_of_them(backoff: Any) -> None:
    """backoff refuses negative/non-finite numbers, bools, empty or mixed lists."""
    with pytest.raises(
        DefinitionError,
        match=r"^Task\(id='t'\) got backoff=.*; pass seconds >= 0, a (non-empty )?list of them, "
        r"or None\.$",
    ):
        Task(id="t", output=int, value=1, backoff=backoff)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), True, "5", [1]])
def test_task_timeout_must_be_positive_seconds(timeout: Any) -> None:
    """timeout refuses zero, negatives, non-finite numbers, bools and non-numbers."""
    with pytest.raises(
        DefinitionError,
        match=r"^Task\(id='t'\) got timeout=.*; pass a positive number of seconds, or None\.$",
    ):
        Task(id="t", output=int, value=1, timeout=timeout)


@pytest.mark.parametrize("label", ["", "   ", 5, b"x", ["a"]])
def test_task_label_must_be_a_non_empty_string(label: Any) -> None:
    """label refuses empty/blank strings and non-strings."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Task\(id='t'\) got label={re.escape(repr(label))}; pass a non-empty string or "
        r"None\.$",
    ):
        Task(id="t", output=int, value=1, label=label)


@pytest.mark.parametrize("prop", ["skip_if", "continue_on_fail"])
def test_task_flags_must_be_bool(prop: str) -> None:
    """skip_if and continue_on_fail refuse truthy non-bools."""
    with pytest.raises(DefinitionError, match=rf"^Task\(id='t'\) got {prop}=1; pass True or False"):
        Task(id="t", output=int, value=1, **{prop: 1})


def test_task_signatures_of_wrapped_functions_are_not_confused() -> None:
    """Two functools.wraps-decorated runs are each checked against their own parameters."""

    def traced(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> int:
            return fn(*args, **kwargs)

        return wrapper

    @traced
    def first(x: int) -> int:
        return x

    @traced
    def second(y: int) -> int:
        return y

    assert dict(Task(id="a", output=int, run=first, needs={"x": "n"}).needs) == {"x": "n"}
    assert dict(Task(id="b", output=int, run=second, needs={"y": "n"}).needs) == {"y": "n"}
    with pytest.raises(DefinitionError, match="it must accept the keyword argument `x`"):
        Task(id="c", output=int, run=second, needs={"x": "n"})


# -- Approval ----------------------------------------------------------------------------------


def test_approval_defaults() -> None:
    """An Approval fails on deny by default and has no needs or label."""
    request = ApprovalRequest(title="Deploy?")
    gate = Approval(id="g", request=request)
    assert (gate.id, gate.request, gate.on_deny, gate.label, gate.skip_if) == (
        "g",
        request,
        "fail",
        None,
        False,
    )
    assert dict(gate.needs) == {}


@pytest.mark.parametrize("policy", ["fail", "continue", "skip"])
def test_approval_accepts_each_deny_policy(policy: Any) -> None:
    """on_deny is one of fail, continue, skip."""
    assert Approval(id="g", request=ApprovalRequest(title="t"), on_deny=policy).on_deny == policy


@pytest.mark.parametrize("policy", ["maybe", "", None, "Skip", True])
def test_approval_refuses_other_deny_policies(policy: Any) -> None:
    """Any other on_deny is refused, listing the choices."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Approval\(id='g'\) got on_deny={re.escape(repr(policy))}; "
        "on_deny must be one of 'fail', 'continue', 'skip'",
    ):
        Approval(id="g", request=ApprovalRequest(title="t"), on_deny=policy)


@pytest.mark.parametrize("request_", ["please", None, {"title": "t"}, 5])
def test_approval_refuses_a_bad_request(request_: Any) -> None:
    """request must be an ApprovalRequest or a function returning one."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Approval\(id='g'\) got request={re.escape(repr(request_))}; "
        + re.escape("pass ApprovalRequest(title=...) or a function of the needs returning one"),
    ):
        Approval(id="g", request=request_)


def test_approval_request_function_is_not_called() -> None:
    """A request function is kept, not called, at construction."""
    calls: list[object] = []

    def request(build: object) -> ApprovalRequest:
        calls.append(build)
        return ApprovalRequest(title="t")

    gate = Approval(id="g", request=request, needs={"build": "b"})
    assert gate.request is request
    assert calls == []


def test_approval_request_params_must_cover_needs() -> None:
    """A request function that does not accept a needs key is refused."""
    with pytest.raises(
        DefinitionError,
        match=r"^Approval\(id='g'\) got request=.*; it must accept the keyword argument `build`",
    ):
        Approval(id="g", request=lambda: ApprovalRequest(title="t"), needs={"build": "b"})


def test_approval_request_required_params_must_be_in_needs() -> None:
    """A required request parameter not in needs is refused; `task` is not offered."""
    with pytest.raises(
        DefinitionError,
        match=r"^Approval\(id='g'\) got request=.*; its required parameter `build` is not in "
        r"needs; add it",
    ):
        Approval(id="g", request=lambda build: ApprovalRequest(title="t"))
    with pytest.raises(DefinitionError, match="its required parameter `task` is not in needs;"):
        Approval(id="g", request=lambda task: ApprovalRequest(title="t"))


def test_approval_needs_are_checked() -> None:
    """Approval needs follow the same rules as Task needs."""
    with pytest.raises(DefinitionError, match="must be a Python identifier other than `task`"):
        Approval(id="g", request=ApprovalRequest(title="t"), needs={"task": "a"})
    with pytest.raises(DefinitionError, match=r"got needs=\['a'\]; pass a dict"):
        Approval(id="g", request=ApprovalRequest(title="t"), needs=["a"])  # type: ignore[arg-type]


def test_approval_label_and_skip_if_are_checked() -> None:
    """Approval label and skip_if are validated like a Task's."""
    with pytest.raises(DefinitionError, match=r"^Approval\(id='g'\) got label=''"):
        Approval(id="g", request=ApprovalRequest(title="t"), label="")
    with pytest.raises(DefinitionError, match=r"^Approval\(id='g'\) got skip_if='y'"):
        Approval(id="g", request=ApprovalRequest(title="t"), skip_if="y")  # type: ignore[arg-type]


def test_approval_request_and_decision_records() -> None:
    """ApprovalRequest and ApprovalDecision are frozen msgspec records with defaults."""
    request = ApprovalRequest(title="Deploy 1.0?")
    assert (request.summary, request.metadata) == (None, {})
    assert msgspec.json.encode(request) == b'{"title":"Deploy 1.0?"}'
    decision = ApprovalDecision(approved=False)
    assert (decision.note, decision.decided_by, decision.decided_at) == (None, None, None)
    with pytest.raises(AttributeError, match="immutable"):
        decision.approved = True  # type: ignore[misc]


# -- Signal ------------------------------------------------------------------------------------


def test_signal_keeps_its_props() -> None:
    """A Signal stores its id, output type and label."""

    @dataclasses.dataclass
    class Callback:
        url: str

    s = Signal(id="cb", output=Callback, label="Remote agent")
    assert (s.id, s.output, s.label, s.skip_if) == ("cb", Callback, "Remote agent", False)


def test_signal_refuses_bad_props() -> None:
    """Signal refuses a bad id, a blank label and a non-bool skip_if."""
    with pytest.raises(DefinitionError, match=r"^Signal got id='a b'; ids must match"):
        Signal(id="a b", output=int)
    with pytest.raises(DefinitionError, match=r"^Signal\(id='s'\) got label=' '; pass a non-empty"):
        Signal(id="s", output=int, label=" ")
    with pytest.raises(DefinitionError, match=r"^Signal\(id='s'\) got skip_if=0; pass True or"):
        Signal(id="s", output=int, skip_if=0)  # type: ignore[arg-type]


def test_signal_takes_no_run_or_needs() -> None:
    """Signal has only id, output, label and skip_if props."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'needs'"):
        Signal(id="s", output=int, needs={"a": "b"})  # type: ignore[call-arg]
