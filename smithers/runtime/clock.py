"""The runtime's one source of "now": wall time (epoch seconds, ISO 8601 UTC) and a monotonic
clock, replaceable for tests so that leases, heartbeats and timestamps move without sleeping.

The store never reads a clock: callers pass it the times it records or compares.

Test-only hook: when ``SMITHERS_TEST_CLOCK_FILE`` names a file, every process started with
it reads its wall time from that file (a number of epoch seconds, rewritten by the test), so
cross-process tests of deadlines and timers move time without sleeping. Never set it in
production: time then stands still unless someone writes the file.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = [
    "Clock",
    "FileClock",
    "ManualClock",
    "SystemClock",
    "current_clock",
    "format_iso",
    "monotonic",
    "now",
    "now_iso",
    "parse_iso",
    "set_clock",
    "use_clock",
]


class Clock(Protocol):
    """Where the runtime asks the time."""

    def time(self) -> float:
        """Wall time, in seconds since the epoch (UTC)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals, not for records)."""


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        """`time.time()`."""
        return time.time()

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: for tests of leases, heartbeats and deadlines.

    Args:
        start: The wall time to start at (default 2026-01-01T00:00:00Z).
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._lock = threading.Lock()
        self._wall = float(start)
        self._mono = 0.0

    def time(self) -> float:
        """The wall time it was set to."""
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        """Seconds advanced since it was made."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``.

        Raises:
            ValueError: When ``seconds`` is negative (time never goes back).
        """
        if seconds < 0:
            raise ValueError(f"advance({seconds!r}) would go back in time; pass seconds >= 0.")
        with self._lock:
            self._wall += seconds
            self._mono += seconds


class FileClock:
    """Test-only: wall time read from a file a test rewrites (``SMITHERS_TEST_CLOCK_FILE``).

    Args:
        path: A file holding epoch seconds as text.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def time(self) -> float:
        """The epoch seconds the file holds now."""
        with open(self.path) as handle:
            return float(handle.read().strip())

    def monotonic(self) -> float:
        """`time.monotonic()`: intervals (heartbeats) still pass in real time."""
        return time.monotonic()

    @staticmethod
    def write(path: str, epoch: float) -> None:
        """Set the time every process reading ``path`` sees (atomically, by rename)."""
        scratch = f"{path}.{os.getpid()}.tmp"
        with open(scratch, "w") as handle:
            handle.write(repr(float(epoch)))
        os.replace(scratch, path)


_SYSTEM = SystemClock()
_TEST_FILE = os.environ.get("SMITHERS_TEST_CLOCK_FILE")
_CURRENT: list[Clock] = [FileClock(_TEST_FILE) if _TEST_FILE else _SYSTEM]
# The last whole second formatted, reused within it; swapped as one tuple (thread-safe).
_SECOND: list[tuple[int | None, str]] = [(None, "")]


def current_clock() -> Clock:
    """The clock the runtime reads now."""
    return _CURRENT[0]


def set_clock(clock: Clock | None) -> Clock:
    """Make ``clock`` the runtime's clock (None: the system clock) for this process.

    Returns:
        The clock it replaces.
    """
    previous = _CURRENT[0]
    _CURRENT[0] = _SYSTEM if clock is None else clock
    return previous


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Read time from ``clock`` inside the block, then restore the clock before it."""
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def now() -> float:
    """The current wall time in seconds since the epoch."""
    return _CURRENT[0].time()


def monotonic() -> float:
    """The current monotonic time in seconds."""
    return _CURRENT[0].monotonic()


def format_iso(epoch: float) -> str:
    """``epoch`` as ISO 8601 UTC with microseconds (``2026-11-21T14:43:30.123456Z``)."""
    second, fraction = divmod(round(epoch * 1_000_000), 1_000_000)
    cached = _SECOND[0]
    if cached[0] != second:  # strftime is slow; it runs once per second at most
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _SECOND[0] = cached
    return f"{cached[1]}.{fraction:06d}Z"


def now_iso() -> str:
    """The current time, ISO 8601 UTC with microseconds (``2026-11-21T14:43:30.123456Z``)."""
    return format_iso(_CURRENT[0].time())


def parse_iso(text: str) -> float:
    """Epoch seconds from an ISO 8601 UTC timestamp as `format_iso` writes it."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()
