"""Run ownership: who holds a run's lease, and whether that owner is still alive."""

from __future__ import annotations

import getpass
import os
import secrets
import socket

from smithers.runtime import clock
from smithers.runtime.clock import now_iso
from smithers.store.records import Lease

__all__ = [
    "DEAD_AFTER",
    "HEARTBEAT_EVERY",
    "HOST_ENV",
    "describe_owner",
    "hostname",
    "is_dead",
    "new_lease",
    "now_iso",
    "os_user",
    "pid_start_time",
]

HEARTBEAT_EVERY = 3.0  # seconds between heartbeat commits
DEAD_AFTER = 10.0  # an owner silent this long is dead, wherever it runs
HOST_ENV = "SMITHERS_HOSTNAME"
# For tests and containers only: a name to use instead of the machine's, so that processes
# on one machine can pose as several hosts (a lease names its host, and a pid is judged
# only on its own host). Two real machines must never share a name.
_HOST = os.environ.get(HOST_ENV) or socket.gethostname()


def hostname() -> str:
    """This machine's host name (``$SMITHERS_HOSTNAME`` when set: tests and containers)."""
    return _HOST


def os_user() -> str:
    """The OS user running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


def _stat(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (Linux), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(b")") + 2 :].split()


def pid_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def new_lease() -> Lease:
    """A fresh lease for this process (the store assigns its epoch)."""
    pid = os.getpid()
    return Lease(
        token=secrets.token_hex(16),
        epoch=0,
        pid=pid,
        pid_start=pid_start_time(pid),
        host=_HOST,
        heartbeat=clock.now(),
        acquired_at=now_iso(),
    )


def is_dead(lease: Lease, *, now: float | None = None) -> bool:
    """Whether the lease's owner is gone: its pid is gone on this host, or it went silent.

    Args:
        lease: The lease to judge.
        now: The time to judge it at (default: the runtime clock's).
    """
    if (now if now is not None else clock.now()) - lease.heartbeat > DEAD_AFTER:
        return True
    if lease.host != _HOST:
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        pass
    fields = _stat(lease.pid)
    if fields is None:
        return False  # no /proc here: the pid answered, so trust it
    if fields[0] in (b"Z", b"X"):
        return True  # killed, not yet reaped by its parent
    # A different start time means the pid was reused by another process.
    return lease.pid_start is not None and int(fields[19]) != lease.pid_start


def describe_owner(lease: Lease) -> str:
    """``pid 123 on host`` for messages."""
    return lease.describe()
