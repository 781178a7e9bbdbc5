"""`Timer`: a durable sleep. The run parks while it waits and wakes when it is due."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import attrs

from smithers.components.element import Element, check_bool, check_id, reject
from smithers.components.policy import TimerFired, check_duration
from smithers.errors import DefinitionError

__all__ = ["Timer", "TimerFired"]


@attrs.frozen(slots=True, init=False)
class Timer(Element):
    """Wait durably for a duration, or until a moment; the output is `TimerFired`.

    The run parks while the timer waits (``smithers run`` exits 3); the live owner, ``resume``
    or a worker wakes it when it is due. Exactly one of ``duration`` and ``until``.

    Args:
        id: Unique within the workflow.
        duration: How long from the moment the run reaches the timer (``"90s"``, ``"4h"``,
            timedelta, seconds).
        until: A moment: a timezone-aware datetime or an ISO 8601 string with a zone
            (``"2026-12-01T09:00:00Z"``).
        label: Display text for graphs; defaults to the id.
        skip_if: When True the timer mounts as ``skipped``.
    """

    kind: ClassVar[str] = "timer"
    id: str
    duration: float | None
    until: float | None
    label: str | None
    skip_if: bool
    output: Any = attrs.field(default=TimerFired, eq=False, repr=False)

    def __init__(
        self,
        *,
        id: str,
        duration: str | float | datetime.timedelta | None = None,
        until: str | datetime.datetime | None = None,
        label: str | None = None,
        skip_if: bool = False,
    ) -> None:
        owner = f"Timer(id={check_id('Timer', 'id', id)!r})"
        if (duration is None) == (until is None):
            got = "both duration and until" if duration is not None else "neither"
            raise DefinitionError(
                f'{owner} got {got}; pass exactly one of duration="4h" or until=datetime.'
            )
        if label is not None and (not isinstance(label, str) or not label.strip()):
            reject(owner, "label", label, "pass a non-empty string or None")
        self.__attrs_init__(
            id=id,
            duration=check_duration(owner, "duration", duration),
            until=None if until is None else _check_until(owner, until),
            label=label,
            skip_if=check_bool(owner, "skip_if", skip_if),
        )

    @property
    def needs(self) -> dict[str, str]:
        """A timer needs no outputs."""
        return {}

    def describe(self) -> str:
        return f"Timer(id={self.id!r})"


def _check_until(owner: str, value: object) -> float:
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if not isinstance(moment, datetime.datetime) or moment.tzinfo is None:
        reject(
            owner,
            "until",
            value,
            'pass a timezone-aware datetime or an ISO 8601 string with a zone ("...Z")',
        )
    return moment.timestamp()
