"""Approval policy props, Timer and Signal timeouts are validated at construction."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from smithers import Approval, ApprovalRequest, Escalation, Signal, Timer
from smithers.components.policy import check_duration, format_duration
from smithers.errors import DefinitionError

REQ = ApprovalRequest(title="Go?")


def gate(**props: Any) -> Approval:
    """An Approval with ``props``."""
    return Approval(id="g", request=REQ, **props)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("4h", 14400), ("2d", 172800), ("1h30m", 5400), (7, 7)],
)
def test_durations_parse_to_seconds(text: Any, seconds: float) -> None:
    """Durations take s/m/h/d units (combined), numbers of seconds and timedeltas."""
    assert check_duration("X", "timeout", text) == seconds
    assert check_duration("X", "timeout", datetime.timedelta(seconds=seconds)) == seconds


def test_format_duration_is_the_shortest_exact_form() -> None:
    """5400 s prints as 1h30m; zero as 0s."""
    assert (format_duration(5400), format_duration(0), format_duration(86461)) == (
        "1h30m",
        "0s",
        "1d1m1s",
    )


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"timeout": "-4h"}, r"timeout='-4h'; pass a positive duration"),
        ({"timeout": "soon"}, r"timeout='soon'; pass a positive duration"),
        ({"timeout": 0}, r"timeout=0; pass a positive duration"),
        ({"remind_every": "1x"}, r"remind_every='1x'"),
        ({"quorum": 0}, r"quorum=0; pass an int >= 1"),
        ({"quorum": True}, r"quorum=True; pass an int >= 1"),
        ({"approvers": ["a"], "quorum": 2}, r"quorum=2; only 1 people may decide \(a\)"),
        ({"approvers": "alice"}, r"approvers='alice'; pass a list"),
        ({"approvers": []}, r"pass at least one person"),
        ({"approvers": ["team:x"]}, r"`team:x` is neither a person's name"),
        ({"approvers": ["group:"]}, r"`group:` is not a group; write group:NAME"),
        ({"approvers": ["two words"]}, r"`two words` is neither"),
        ({"on_timeout": "maybe"}, r"on_timeout must be one of 'deny', 'approve', 'fail'"),
        ({"forbid_self": 1}, r"forbid_self=1; pass True or False"),
        ({"escalate": ["x"]}, r"escalate=\['x'\]; pass Escalation"),
        (
            {"timeout": "1h", "escalate": Escalation(after="2h", approvers=["b"])},
            r"never happens with timeout=3600s; escalate before the timeout",
        ),
    ],
)
def test_bad_policy_props_name_the_prop_and_the_fix(props: dict[str, Any], message: str) -> None:
    """Every bad policy prop is a DefinitionError naming the gate, the prop and the fix."""
    with pytest.raises(DefinitionError, match=r"Approval\(id='g'\) got " + ".*" + message):
        gate(**props)


def test_quorum_may_exceed_a_list_with_groups() -> None:
    """A group's size is known only at decision time, so quorum is not checked against it."""
    assert gate(approvers=["group:release"], quorum=3).quorum == 3


def test_escalations_count_toward_a_fixed_quorum() -> None:
    """People added by escalation count when checking the quorum against a fixed list."""
    step = Escalation(after="1h", approvers=["c"])
    assert gate(approvers=["a"], quorum=2, escalate=[step]).escalate == (step,)


def test_a_default_gate_has_no_policy_record() -> None:
    """Without policy props the gate keeps no policy (old records stay as they were)."""
    assert gate().policy() is None
    assert gate(quorum=2).policy() == {
        "approvers": None,
        "forbid_self": False,
        "quorum": 2,
        "timeout": None,
        "on_timeout": "deny",
        "remind_every": None,
        "escalate": [],
    }


def test_escalation_validates_its_own_props() -> None:
    """Escalation refuses a bad delay and an empty approver list."""
    with pytest.raises(DefinitionError, match=r"Escalation got after='later'"):
        Escalation(after="later", approvers=["a"])
    with pytest.raises(DefinitionError, match=r"Escalation got approvers=\[\]"):
        Escalation(after="1h", approvers=[])


def test_timer_takes_exactly_one_of_duration_and_until() -> None:
    """Timer needs duration or until, not both, and until must carry a zone."""
    assert Timer(id="t", duration="1h").duration == 3600
    moment = datetime.datetime(2026, 12, 1, 9, tzinfo=datetime.UTC)
    assert Timer(id="t", until=moment).until == moment.timestamp()
    assert Timer(id="t", until="2026-12-01T09:00:00Z").until == moment.timestamp()
    with pytest.raises(DefinitionError, match=r"got both duration and until; pass exactly one"):
        Timer(id="t", duration="1h", until=moment)
    with pytest.raises(DefinitionError, match=r"got neither; pass exactly one"):
        Timer(id="t")
    with pytest.raises(DefinitionError, match=r"until=.*timezone-aware"):
        Timer(id="t", until=datetime.datetime(2026, 12, 1))
    with pytest.raises(DefinitionError, match=r"duration='-1s'"):
        Timer(id="t", duration="-1s")


def test_signal_timeout_and_on_timeout_are_checked() -> None:
    """Signal takes a positive timeout and on_timeout fail or skip."""
    assert Signal(id="s", output=int, timeout="30m", on_timeout="skip").timeout == 1800
    with pytest.raises(DefinitionError, match=r"on_timeout must be one of 'fail', 'skip'"):
        Signal(id="s", output=int, on_timeout="deny")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"timeout='never'"):
        Signal(id="s", output=int, timeout="never")
