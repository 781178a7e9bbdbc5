"""Binary keys that sort like tuples: a run is one prefix scan, node ``a`` never matches ``ab``.

Layout: ``run key (u64 big-endian) || node id (UTF-8, no NUL) || 0x00 || iteration (u32 BE
each)``. Free-form run ids map to the fixed-width run key through the ``run_ids`` database.
"""

from __future__ import annotations

import struct

from smithers.store.records import Iteration

__all__ = [
    "MAX_KEY",
    "event_key",
    "iteration_bytes",
    "node_key",
    "parse_event_key",
    "run_key",
    "status_key",
    "time_key",
]

MAX_KEY = 511  # LMDB's default key limit
_U64 = struct.Struct(">Q")


def run_key(key: int) -> bytes:
    """The fixed-width key of a run's internal number."""
    return _U64.pack(key)


def iteration_bytes(iteration: Iteration) -> bytes:
    """An iteration tuple as big-endian u32s (sorts like the tuple)."""
    if not iteration:
        return b""
    return struct.pack(f">{len(iteration)}I", *iteration)


def node_key(run: bytes, name: str, iteration: Iteration) -> bytes:
    """The key of a node (or group) record at one iteration inside run ``run``."""
    return run + name.encode() + b"\x00" + iteration_bytes(iteration)


def event_key(seq: int) -> bytes:
    """The key of an event in the global log."""
    return _U64.pack(seq)


def parse_event_key(raw: bytes) -> int:
    """The sequence number of an event key (the last 8 bytes of per-run index keys too)."""
    return int(_U64.unpack(raw[-8:])[0])


def status_key(status: str, run: bytes) -> bytes:
    """The runs-by-status index key."""
    return status.encode() + b"\x00" + run


def time_key(epoch: float, run: bytes) -> bytes:
    """An index key that sorts by time, then run: ``microseconds since the epoch (u64 BE) ||
    run key`` (times before the epoch sort first)."""
    return _U64.pack(max(0, round(epoch * 1_000_000))) + run
