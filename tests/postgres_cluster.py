"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, a server on a free
loopback port, stopped at the end of the session.

PostgreSQL refuses to run as root, so as root (CI) the cluster belongs to the ``postgres``
user and its commands run through ``runuser``. Without the binaries the PostgreSQL tests are
skipped with the reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FAST", "Cluster", "cluster", "empty_store", "find_bin", "missing_reason"]

# Fast, not durable: the tests kill clients, never the server (benchmarks start their own).
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


# Child tables first (they reference runs), then the counters back to zero. A new table
# (a later migration) adds its DELETE here.
_EMPTY = """
DELETE FROM smithers_events; DELETE FROM smithers_nodes; DELETE FROM smithers_groups;
DELETE FROM smithers_attempts; DELETE FROM smithers_outputs; DELETE FROM smithers_approvals;
DELETE FROM smithers_signals; DELETE FROM smithers_frames; DELETE FROM smithers_runs;
DELETE FROM smithers_actor_groups; DELETE FROM smithers_tokens; DELETE FROM smithers_link_keys;
DELETE FROM smithers_claims; DELETE FROM smithers_artifacts; DELETE FROM smithers_run_artifacts;
DELETE FROM smithers_cursors; DELETE FROM smithers_webhooks;
UPDATE smithers_counters SET value = 0;
"""


def empty_store(url: str) -> None:
    """Delete every row of the smithers tables at ``url`` (faster than a new database)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_EMPTY)


def find_bin() -> str | None:
    """The directory holding initdb and pg_ctl: ``$SMITHERS_PG_BIN``, Debian's newest, PATH."""
    given = os.environ.get("SMITHERS_PG_BIN")
    if given:
        return given if os.path.exists(os.path.join(given, "initdb")) else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def missing_reason() -> str | None:
    """Why no cluster can start here, or None when one can."""
    if find_bin() is None:
        where = os.environ.get("SMITHERS_PG_BIN") or "/usr/lib/postgresql/*/bin or PATH"
        return f"PostgreSQL is not installed (no initdb in {where}; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'smithers[postgres]')"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A running server: its data directory, port and the URL of a database in it."""

    def __init__(self, root: str, port: int, bindir: str, options: tuple[str, ...]) -> None:
        self.root = root
        self.port = port
        self.bindir = bindir
        self.options = options
        self.data = os.path.join(root, "data")

    def start(self) -> None:
        """Start the server (again) on its port, waiting until it accepts connections."""
        listen = ("-c", "listen_addresses=127.0.0.1")
        server = " ".join(["-p", str(self.port), "-k", self.root, *listen, *self.options])
        log = os.path.join(self.root, "server.log")
        self.run("pg_ctl", "-D", self.data, "-l", log, "-o", server, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server at once, as a crash or a pulled cable would (clients see it gone)."""
        if not os.path.exists(os.path.join(self.data, "postmaster.pid")):
            return  # already stopped
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` (trust authentication: no password)."""
        return f"postgresql://smithers@127.0.0.1:{self.port}/{database}"

    def command(self, *args: str) -> list[str]:
        """A server command, run as the ``postgres`` user when we are root."""
        tool = [os.path.join(self.bindir, args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *tool] if os.geteuid() == 0 else tool

    def run(self, *args: str) -> None:
        """Run a server command; its output goes into the failure message if it fails."""
        done = subprocess.run(self.command(*args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = os.path.join(self.root, "server.log")
            tail = ""
            if os.path.exists(log):
                with open(log) as file:
                    tail = file.read()[-2000:]
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{tail}")

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def cluster(*options: str) -> Iterator[Cluster]:
    """Start a cluster (extra server ``options`` such as `FAST`), stop and remove it after."""
    bindir = find_bin()
    assert bindir is not None, missing_reason()
    root = tempfile.mkdtemp(prefix="smithers-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    found = Cluster(root, free_port(), bindir, options)
    try:
        found.run(
            "initdb",
            "-D",
            found.data,
            "-U",
            "smithers",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        found.start()
        try:
            yield found
        finally:
            found.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
