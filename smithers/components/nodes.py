"""Durable node components (`Task`, `Approval`, `Signal`) and the values they exchange."""

from __future__ import annotations

import datetime
import inspect
import math
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import attrs
import msgspec

from smithers.components.artifacts import Artifacts, Putter
from smithers.components.element import (
    Element,
    check_bool,
    check_id,
    check_needs,
    reject,
)
from smithers.components.policy import (
    Escalation,
    OnTimeout,
    Vote,
    check_duration,
    check_policy,
)
from smithers.errors import DefinitionError, LinkError

__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalRequest",
    "OnDeny",
    "Signal",
    "Task",
    "TaskInfo",
]

OnDeny = Literal["fail", "continue", "skip"]
_UNSET: Any = object()


class ApprovalRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a person sees when asked to decide a gate; persisted when the gate is reached.

    Attributes:
        title: One line, e.g. ``"Deploy 1.4.2?"``.
        summary: Longer text, or None.
        metadata: Small JSON-able facts (risk, commit sha, links to artifacts).
    """

    title: str
    summary: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ApprovalDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The typed outcome of a gate; it becomes the gate's output when the gate finishes.

    Attributes:
        approved: True if approved, False if denied.
        note: The decider's note, or None.
        decided_by: Who decided, as given (``--by``, ``$SMITHERS_ACTOR``, the OS user).
        decided_at: When, ISO 8601 UTC.
        votes: Every vote that led here, in order (for quorum 1, the one decision; empty
            when the gate timed out with no vote).
    """

    approved: bool
    note: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    votes: tuple[Vote, ...] = ()


class TaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Passed as ``task=`` to a ``run`` callable that declares that parameter.

    Attributes:
        run_id: The run's id.
        node_id: The task's id.
        iteration: The loop iteration tuple, ``()`` outside loops.
        attempt: 1 for the first attempt; interrupted attempts count too.
        idempotency_key: The same for every attempt of this node and iteration; pass it to
            external systems so a retried side effect happens once.
        link_maker: Makes signed signal links (set by the runtime when a base URL is
            configured); use `signal_link`.
        artifact_putter: Stores artifacts with the run (set by the runtime); use
            `artifacts`.
    """

    run_id: str
    node_id: str
    iteration: tuple[int, ...]
    attempt: int
    idempotency_key: str
    link_maker: Callable[[str, float], str] | None = None
    artifact_putter: Putter | None = None

    @property
    def artifacts(self) -> Artifacts:
        """Stores bytes with the run: ``task.artifacts.put(data, name=...) -> Artifact``."""
        return Artifacts(self.artifact_putter, self.node_id)

    def signal_link(self, node_id: str, *, expires_in: float = 7 * 86400) -> str:
        """A signed URL that delivers data to Signal ``node_id`` of this run: a remote agent
        POSTs its JSON there (no token needed); a GET returns the expected JSON Schema.

        Args:
            node_id: The Signal's id.
            expires_in: Seconds the link stays valid (default 7 days).

        Returns:
            The URL under the service's base URL.

        Raises:
            LinkError: When no base URL is configured (``smithers serve --base-url URL`` or
                ``$SMITHERS_BASE_URL`` in the process that runs the task).
        """
        if self.link_maker is None:
            raise LinkError(
                f"Task `{self.node_id}` asked for a signal link to `{node_id}` but no base URL "
                "is configured; run it under `smithers serve --base-url URL` or set "
                "$SMITHERS_BASE_URL."
            )
        return self.link_maker(node_id, expires_in)


@attrs.frozen(slots=True, init=False)
class Task(Element):
    """A unit of work whose result is validated into ``output`` and committed durably.

    Args:
        id: Unique within the workflow.
        output: The output type (msgspec Struct, dataclass, attrs class, TypedDict, builtin).
        run: A sync or async callable; it receives the ``needs`` outputs as keyword arguments,
            plus ``task: TaskInfo`` if it declares that parameter. Exactly one of run/value.
        value: A payload used as the output as is. Exactly one of run/value.
        needs: Parameter name to node id; the task runs once those outputs exist.
        retries: Extra attempts after a failure (``retries=2`` allows 3 attempts).
        backoff: Seconds before a retry: a number (doubled after each retry) or a sequence of
            delays (the last repeats). None retries at once.
        timeout: Seconds an attempt may take; a late sync attempt is abandoned.
        skip_if: When True the task mounts as ``skipped``.
        continue_on_fail: When True a final failure does not fail the run; tasks that need
            this one are skipped.
        label: Display text for graphs; defaults to the id.
    """

    kind: ClassVar[str] = "task"
    id: str
    output: Any
    run: Callable[..., Any] | None
    value: Any
    needs: Mapping[str, str]
    retries: int
    backoff: float | tuple[float, ...] | None
    timeout: float | None
    skip_if: bool
    continue_on_fail: bool
    label: str | None
    wants_task: bool = attrs.field(eq=False, repr=False)
    is_async: bool = attrs.field(eq=False, repr=False)

    def __init__(
        self,
        *,
        id: str,
        output: Any,
        run: Callable[..., Any] | None = None,
        value: Any = _UNSET,
        needs: Mapping[str, str] | None = None,
        retries: int = 0,
        backoff: float | tuple[float, ...] | list[float] | None = None,
        timeout: float | None = None,
        skip_if: bool = False,
        continue_on_fail: bool = False,
        label: str | None = None,
    ) -> None:
        owner = f"Task(id={check_id('Task', 'id', id)!r})"
        has_value = value is not _UNSET
        if (run is None) == (not has_value):
            got = "both run and value" if has_value else "neither run nor value"
            raise DefinitionError(
                f"{owner} got {got}; pass exactly one of run=callable or value=payload."
            )
        if run is not None and not callable(run):
            reject(owner, "run", run, "pass a callable (sync or async)")
        checked_needs = check_needs(owner, needs)
        wants_task = is_async = False
        if run is not None:
            wants_task, is_async = _check_callable(owner, "run", run, checked_needs)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            reject(owner, "retries", retries, "pass an int >= 0")
        self.__attrs_init__(
            id=id,
            output=output,
            run=run,
            value=value if has_value else None,
            needs=checked_needs,
            retries=retries,
            backoff=_check_backoff(owner, backoff),
            timeout=_check_seconds(owner, "timeout", timeout),
            skip_if=check_bool(owner, "skip_if", skip_if),
            continue_on_fail=check_bool(owner, "continue_on_fail", continue_on_fail),
            label=_check_label(owner, label),
            wants_task=wants_task,
            is_async=is_async,
        )

    def describe(self) -> str:
        return f"Task(id={self.id!r})"


@attrs.frozen(slots=True, init=False)
class Approval(Element):
    """A durable gate that waits for a person's decision; its output is an `ApprovalDecision`.

    Args:
        id: Unique within the workflow; ``smithers approve RUN --node ID`` names it.
        request: An `ApprovalRequest`, or a pure function of the ``needs`` outputs returning one.
            It runs once, when the gate is reached, and its result is persisted.
        needs: Parameter name to node id, passed to ``request``.
        on_deny: ``"fail"`` fails the run; ``"continue"`` finishes the gate with the denial as
            its output; ``"skip"`` skips the gate and its later siblings.
        label: Display text for graphs; defaults to the id.
        skip_if: When True the gate mounts as ``skipped``.
        approvers: Who may decide: people and ``group:NAME`` entries (groups live in the
            store, ``smithers group add``); None lets anyone decide.
        forbid_self: When True the person who started the run may not decide.
        quorum: Distinct approvals needed; one denial decides "denied" at once.
        timeout: How long the gate waits from its request (``"30m"``, ``"4h"``, ``"2d"``,
            timedelta, seconds); None waits forever.
        on_timeout: What the deadline decides: ``"deny"`` (then ``on_deny`` applies),
            ``"approve"``, or ``"fail"`` (the gate and the run fail).
        remind_every: Emit ``approval.reminder`` at this interval while the gate waits.
        escalate: `Escalation` steps; each widens who may decide after its delay.
    """

    kind: ClassVar[str] = "approval"
    id: str
    request: ApprovalRequest | Callable[..., ApprovalRequest]
    needs: Mapping[str, str]
    on_deny: OnDeny
    label: str | None
    skip_if: bool
    approvers: tuple[str, ...] | None = None
    forbid_self: bool = False
    quorum: int = 1
    timeout: float | None = None
    on_timeout: OnTimeout = "deny"
    remind_every: float | None = None
    escalate: tuple[Escalation, ...] = ()

    def __init__(
        self,
        *,
        id: str,
        request: ApprovalRequest | Callable[..., ApprovalRequest],
        needs: Mapping[str, str] | None = None,
        on_deny: OnDeny = "fail",
        label: str | None = None,
        skip_if: bool = False,
        approvers: list[str] | tuple[str, ...] | None = None,
        forbid_self: bool = False,
        quorum: int = 1,
        timeout: str | float | datetime.timedelta | None = None,
        on_timeout: OnTimeout = "deny",
        remind_every: str | float | datetime.timedelta | None = None,
        escalate: Escalation | list[Escalation] | tuple[Escalation, ...] = (),
    ) -> None:
        owner = f"Approval(id={check_id('Approval', 'id', id)!r})"
        checked_needs = check_needs(owner, needs)
        if isinstance(request, ApprovalRequest):
            pass
        elif callable(request):
            _check_callable(owner, "request", request, checked_needs, allow_task=False)
        else:
            reject(
                owner,
                "request",
                request,
                "pass ApprovalRequest(title=...) or a function of the needs returning one",
            )
        if on_deny not in ("fail", "continue", "skip"):
            reject(owner, "on_deny", on_deny, "on_deny must be one of 'fail', 'continue', 'skip'")
        self.__attrs_init__(
            id=id,
            request=request,
            needs=checked_needs,
            on_deny=on_deny,
            label=_check_label(owner, label),
            skip_if=check_bool(owner, "skip_if", skip_if),
            **check_policy(
                owner,
                approvers=approvers,
                forbid_self=forbid_self,
                quorum=quorum,
                timeout=timeout,
                on_timeout=on_timeout,
                remind_every=remind_every,
                escalate=escalate,
            ),
        )

    def policy(self) -> dict[str, Any] | None:
        """The gate's policy as the approval record keeps it, or None for the default one."""
        if (
            self.approvers is None
            and not self.forbid_self
            and self.quorum == 1
            and self.timeout is None
            and self.remind_every is None
            and not self.escalate
        ):
            return None
        return {
            "approvers": None if self.approvers is None else list(self.approvers),
            "forbid_self": self.forbid_self,
            "quorum": self.quorum,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "remind_every": self.remind_every,
            "escalate": [step.to_builtins() for step in self.escalate],
        }

    def describe(self) -> str:
        return f"Approval(id={self.id!r})"


@attrs.frozen(slots=True, init=False)
class Signal(Element):
    """A durable wait for data from outside (a remote agent's callback, a webhook).

    Args:
        id: Unique within the workflow; ``smithers signal RUN --node ID`` names it.
        output: The type the delivered data is validated into.
        label: Display text for graphs; defaults to the id.
        skip_if: When True the signal mounts as ``skipped``.
        timeout: How long to wait from the moment the run reaches the signal (``"30m"``,
            ``"4h"``, timedelta, seconds); None waits forever.
        on_timeout: ``"fail"`` fails the signal and the run; ``"skip"`` skips it (and the
            nodes that need it).
    """

    kind: ClassVar[str] = "signal"
    id: str
    output: Any
    label: str | None
    skip_if: bool
    timeout: float | None = None
    on_timeout: Literal["fail", "skip"] = "fail"

    def __init__(
        self,
        *,
        id: str,
        output: Any,
        label: str | None = None,
        skip_if: bool = False,
        timeout: str | float | datetime.timedelta | None = None,
        on_timeout: Literal["fail", "skip"] = "fail",
    ) -> None:
        owner = f"Signal(id={check_id('Signal', 'id', id)!r})"
        if on_timeout not in ("fail", "skip"):
            reject(owner, "on_timeout", on_timeout, "on_timeout must be one of 'fail', 'skip'")
        self.__attrs_init__(
            id=id,
            output=output,
            label=_check_label(owner, label),
            skip_if=check_bool(owner, "skip_if", skip_if),
            timeout=check_duration(owner, "timeout", timeout),
            on_timeout=on_timeout,
        )

    def describe(self) -> str:
        return f"Signal(id={self.id!r})"


def _check_label(owner: str, label: object) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip():
        reject(owner, "label", label, "pass a non-empty string or None")
    return label


def _check_seconds(owner: str, prop: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        reject(owner, prop, value, "pass a positive number of seconds, or None")
    return float(value)


def _check_backoff(owner: str, value: object) -> float | tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            reject(owner, "backoff", value, "pass seconds >= 0, a list of them, or None")
        return float(value)
    if (
        isinstance(value, list | tuple)
        and value
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in value
        )
    ):
        return tuple(float(v) for v in value)
    reject(owner, "backoff", value, "pass seconds >= 0, a non-empty list of them, or None")


_Signature = tuple[frozenset[str], frozenset[str], bool, bool]
_SIGNATURES: dict[tuple[types.CodeType, int, tuple[str, ...]], _Signature] = {}


def _cache_key(fn: Callable[..., Any]) -> tuple[types.CodeType, int, tuple[str, ...]] | None:
    """Plain functions made by one ``def``/``lambda`` share a signature; anything that may
    present another one (wrappers with ``__wrapped__``, ``__signature__``, methods) is not
    cached."""
    if (
        not isinstance(fn, types.FunctionType)
        or hasattr(fn, "__wrapped__")
        or hasattr(fn, "__signature__")
    ):
        return None
    return (fn.__code__, len(fn.__defaults__ or ()), tuple(sorted(fn.__kwdefaults__ or ())))


def _signature(fn: Callable[..., Any]) -> _Signature:
    """Return (accepted names, required names, takes **kwargs, is async) of a callable."""
    key = _cache_key(fn)
    if key is not None and key in _SIGNATURES:
        return _SIGNATURES[key]
    accepted: set[str] = set()
    required: set[str] = set()
    var_kw = False
    params: list[inspect.Parameter] = []
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: accept anything
        var_kw = True
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            var_kw = True
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            accepted.add(param.name)
            if param.default is param.empty:
                required.add(param.name)
        elif param.kind is param.POSITIONAL_ONLY and param.default is param.empty:
            required.add(param.name)
    result = (
        frozenset(accepted),
        frozenset(required),
        var_kw,
        inspect.iscoroutinefunction(fn),
    )
    if key is not None:
        _SIGNATURES[key] = result
    return result


def _check_callable(
    owner: str,
    prop: str,
    fn: Callable[..., Any],
    needs: Mapping[str, str],
    *,
    allow_task: bool = True,
) -> tuple[bool, bool]:
    """Check ``fn`` accepts exactly the needs (and maybe ``task``); return (wants_task, async)."""
    accepted, required, var_kw, is_async = _signature(fn)
    for param in needs:
        if param not in accepted and not var_kw:
            reject(owner, prop, fn, f"it must accept the keyword argument `{param}` named in needs")
    wants_task = allow_task and "task" in accepted
    for param in required:
        if param not in needs and not (param == "task" and wants_task):
            extra = " or `task`" if allow_task else ""
            reject(
                owner,
                prop,
                fn,
                f"its required parameter `{param}` is not in needs{extra}; add it to needs "
                "or give it a default",
            )
    return wants_task, is_async
