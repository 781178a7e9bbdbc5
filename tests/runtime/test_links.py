"""Durations for --expires, and TaskInfo.signal_link without a base URL."""

from __future__ import annotations

import pytest

from smithers.components.nodes import TaskInfo
from smithers.errors import InputError, LinkError
from smithers.runtime.links import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("4h", 14400.0), ("2d", 172800.0)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    """Numbers with s/m/h/d (or bare seconds) become seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "soon", "3w"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything else is an InputError naming the value and the accepted forms."""
    with pytest.raises(InputError, match="is not a duration; pass a positive number"):
        parse_duration(text)


def test_signal_link_without_a_base_url_says_how_to_set_one() -> None:
    """A task asking for a link with no base URL configured gets a LinkError naming the fix."""
    info = TaskInfo(run_id="r", node_id="t", iteration=(), attempt=1, idempotency_key="k")
    with pytest.raises(LinkError, match=r"no base URL is configured; .*\$SMITHERS_BASE_URL"):
        info.signal_link("callback")
