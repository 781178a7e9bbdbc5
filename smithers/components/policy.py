"""Approval policies and time, as users write them: durations, approver lists, `Escalation`,
`Vote` and the checks `Approval`, `Signal` and `Timer` run at construction.

Pure: no clock, no store. Durations are kept as seconds; the runtime adds them to the time
a gate was requested (or a timer started).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Iterable
from typing import Any, Literal

import attrs
import msgspec

from smithers.components.element import check_bool, reject

__all__ = [
    "GROUP_PREFIX",
    "Escalation",
    "OnTimeout",
    "TimerFired",
    "Vote",
    "check_approvers",
    "check_duration",
    "check_policy",
    "format_duration",
]

OnTimeout = Literal["deny", "approve", "fail"]
GROUP_PREFIX = "group:"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PERSON = re.compile(r"[^\s:]{1,128}")
_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DURATION_FIX = (
    'pass a positive duration such as "90s", "30m", "4h", "2d" or "1h30m", a timedelta, or '
    "seconds as a number"
)


class Vote(msgspec.Struct, frozen=True, kw_only=True):
    """One person's vote on a gate.

    Attributes:
        by: Who voted.
        approved: True for approve, False for deny.
        note: The voter's note, or None.
        at: When, ISO 8601 UTC.
    """

    by: str
    approved: bool
    note: str | None = None
    at: str


class TimerFired(msgspec.Struct, frozen=True, kw_only=True):
    """The output of a `Timer`: when it fired (ISO 8601 UTC).

    Attributes:
        fired_at: When the run noticed the timer was due, ISO 8601 UTC.
    """

    fired_at: str


def check_duration(owner: str, prop: str, value: object) -> float | None:
    """Seconds from a duration prop (``"30m"``, ``"4h"``, ``"1h30m"``, timedelta, number).

    Returns:
        The positive number of seconds, or None for None.

    Raises:
        DefinitionError: For a negative, zero or unparseable duration.
    """
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text and _DURATION.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        reject(owner, prop, value, _DURATION_FIX)
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1h30m"``: the shortest exact form, for messages and listings."""
    left = round(seconds)
    if left <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def check_approvers(owner: str, prop: str, value: object) -> tuple[str, ...] | None:
    """A tuple of people and ``group:NAME`` entries, or None (anyone may decide).

    Raises:
        DefinitionError: For a bare string, an empty list, or an entry that is neither a
            person's name (no spaces or colons) nor ``group:NAME``.
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        reject(owner, prop, value, 'pass a list such as ["alice", "group:release"], or None')
    entries = tuple(value)
    if not entries:
        reject(owner, prop, value, "pass at least one person or group:NAME, or None for anyone")
    for entry in entries:
        if not isinstance(entry, str):
            reject(owner, prop, value, "every entry must be a string")
        if entry.startswith(GROUP_PREFIX):
            if _GROUP.fullmatch(entry[len(GROUP_PREFIX) :]) is None:
                reject(
                    owner,
                    prop,
                    value,
                    f"`{entry}` is not a group; write group:NAME with NAME of letters, digits, "
                    "_ . -",
                )
        elif _PERSON.fullmatch(entry) is None:
            reject(
                owner,
                prop,
                value,
                f"`{entry}` is neither a person's name (no spaces or colons) nor group:NAME",
            )
    return tuple(dict.fromkeys(entries))


@attrs.frozen(slots=True, init=False)
class Escalation:
    """Widen who may decide a gate once it has waited ``after`` since it was requested.

    Args:
        after: A duration (``"2h"``, timedelta, seconds) from the request.
        approvers: People and ``group:NAME`` entries added to those who may decide.
    """

    after: float
    approvers: tuple[str, ...]

    def __init__(self, after: Any, approvers: Iterable[str]) -> None:
        owner = "Escalation"
        seconds = check_duration(owner, "after", after)
        if seconds is None:
            reject(owner, "after", after, _DURATION_FIX)
        widened = check_approvers(owner, "approvers", approvers)
        assert widened is not None
        self.__attrs_init__(after=seconds, approvers=widened)

    def to_builtins(self) -> dict[str, Any]:
        """``{"after": seconds, "approvers": [...]}``, as the approval record keeps it."""
        return {"after": self.after, "approvers": list(self.approvers)}


def check_policy(owner: str, **props: Any) -> dict[str, Any]:
    """Validate an Approval's policy props together (quorum against the approver list,
    escalations against the timeout).

    Returns:
        The checked props, durations in seconds and escalations sorted by delay.

    Raises:
        DefinitionError: Naming the prop and the fix.
    """
    approvers = check_approvers(owner, "approvers", props["approvers"])
    quorum = props["quorum"]
    if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1:
        reject(owner, "quorum", quorum, "pass an int >= 1 (distinct approvals needed)")
    timeout = check_duration(owner, "timeout", props["timeout"])
    if props["on_timeout"] not in ("deny", "approve", "fail"):
        reject(
            owner,
            "on_timeout",
            props["on_timeout"],
            "on_timeout must be one of 'deny', 'approve', 'fail'",
        )
    raw_steps = props["escalate"]
    steps = (raw_steps,) if isinstance(raw_steps, Escalation) else raw_steps
    if not isinstance(steps, list | tuple) or not all(isinstance(s, Escalation) for s in steps):
        reject(owner, "escalate", raw_steps, 'pass Escalation(after="2h", approvers=[...]) items')
    steps = tuple(sorted(steps, key=lambda step: step.after))
    for step in steps:
        if timeout is not None and step.after >= timeout:
            reject(
                owner,
                "escalate",
                raw_steps,
                f"an escalation after {step.after:g}s never happens with timeout={timeout:g}s; "
                "escalate before the timeout",
            )
    fixed = [*(approvers or ()), *(a for step in steps for a in step.approvers)]
    if (
        approvers is not None
        and not any(a.startswith("group:") for a in fixed)
        and quorum > len(set(fixed))
    ):
        reject(
            owner,
            "quorum",
            quorum,
            f"only {len(set(fixed))} people may decide ({', '.join(sorted(set(fixed)))}); "
            "lower the quorum or add approvers",
        )
    return {
        "approvers": approvers,
        "forbid_self": check_bool(owner, "forbid_self", props["forbid_self"]),
        "quorum": quorum,
        "timeout": timeout,
        "on_timeout": props["on_timeout"],
        "remind_every": check_duration(owner, "remind_every", props["remind_every"]),
        "escalate": steps,
    }
