"""Child processes of the service: ``smithers ...`` commands in a run's working directory.

Workflow code (its module, its tasks, its validation) only ever runs in such a child, never
in the service process, so a crashing workflow cannot take the service down.

A child is forked from a fork server (`multiprocessing`'s ``forkserver``) that imported
smithers and its dependencies once and never opens a store or imports workflow code: a
child starts in milliseconds instead of paying an interpreter start and those imports
(about 0.2 s of CPU each) for every resume. It then runs exactly what ``python -m smithers
--store LOCATION --json ARGS`` runs, in its own session, in the run's directory, with the
service's environment as it is now. Where the fork server cannot start, or a child could
not import this process's main module again (as multiprocessing has every child do), a
child is ``python -m smithers`` started the ordinary way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import multiprocessing
import os
import runpy
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any, Protocol

import attrs
import msgspec

from smithers.runtime.links import BASE_URL_ENV
from smithers.store.records import RunRecord

__all__ = ["Child", "ChildProcess", "finish_child", "run_dir", "smithers_child", "start_child"]

# What every child imports anyway: the fork server imports it once (a module it cannot
# import, such as psycopg without the postgres extra, is skipped).
_PRELOAD = [
    "smithers.cli",
    "smithers.runtime.usecases",
    "smithers.runtime.engine",
    "smithers.store.kv.lmdb_kv",
    "smithers.store.postgres",
    "psycopg",
]
# False where there is no fork server, or after it failed _GIVE_UP times in a row: from then
# on children start the ordinary way.
_FORK_SERVER = [hasattr(os, "fork") and "forkserver" in multiprocessing.get_all_start_methods()]
_FAILURES = [0]
_GIVE_UP = 3


class ChildProcess(Protocol):
    """What the service needs of a running child (`asyncio.subprocess.Process` has it)."""

    @property
    def pid(self) -> int:
        """The child's process id (also its process group: it leads its own session)."""

    @property
    def returncode(self) -> int | None:
        """The exit code once it ended (minus the signal that killed it), else None."""

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child."""

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        """Wait for it to end; return everything it printed on stdout and stderr."""


@attrs.frozen
class Child:
    """A finished child: exit code, its JSON document (or None) and its last stderr line."""

    code: int
    document: Any
    last_error: str

    @property
    def reported(self) -> bool:
        """Whether it printed a run document (``{"run_id", "status", ...}``)."""
        return isinstance(self.document, dict) and "status" in self.document

    @property
    def error_type(self) -> str | None:
        """The ``error.type`` of a ``--json`` error document, if it printed one."""
        doc = self.document
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            kind = doc["error"].get("type")
            return kind if isinstance(kind, str) else None
        return None

    @property
    def error_message(self) -> str:
        """The error's message, else the last stderr line, else the exit code."""
        doc = self.document
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return str(doc["error"].get("message"))
        return self.last_error or f"the process exited with code {self.code}"


def run_dir(run: RunRecord | None) -> str | None:
    """The run's recorded working directory when it still exists, else None."""
    cwd = run.definition.cwd if run is not None and run.definition is not None else None
    return cwd if cwd is not None and os.path.isdir(cwd) else None


async def start_child(
    location: str, args: list[str], *, cwd: str | None, base_url: str | None
) -> ChildProcess:
    """Start ``smithers --store LOCATION --json ARGS`` in a child in its own session (a
    Ctrl-C meant for the service reaches it only through the service)."""
    env = dict(os.environ)
    if base_url:
        env[BASE_URL_ENV] = base_url
    argv = ["--store", location, "--json", *args]
    if _FORK_SERVER[0] and _main_reimportable():
        try:
            # In a thread: the first child starts the fork server (an interpreter start), and
            # every start waits for the server's reply; the service's loop must not.
            forked = await asyncio.to_thread(_Forked, argv, cwd=cwd or os.getcwd(), env=env)
        except (OSError, EOFError, ValueError) as exc:
            # The platform or a sandbox forbids it, or the fork server died as this child was
            # asked of it (multiprocessing starts a new one next time): this child starts the
            # ordinary way, and after _GIVE_UP failures in a row every child does.
            _FAILURES[0] += 1
            _FORK_SERVER[0] = _FAILURES[0] < _GIVE_UP
            then = (
                "this child starts as `python -m smithers`"
                if _FORK_SERVER[0]
                else "children start as `python -m smithers` from now on"
            )
            print(
                f"smithers: the fork server failed ({type(exc).__name__}: {exc}); {then}.",
                file=sys.stderr,
            )
        else:
            _FAILURES[0] = 0
            return forked
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smithers",
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


def _main_reimportable() -> bool:
    """Whether a forked child can import this process's main module again, as multiprocessing
    makes every child do before anything else (``smithers serve`` and ``worker`` can; a
    program read from stdin cannot, and its children would all fail)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True  # `python -m NAME`: imported again by name
    path = getattr(main, "__file__", None)
    if path is None:
        return True  # `python -c`, an interactive session: nothing to import
    started_in = getattr(multiprocessing.process, "ORIGINAL_DIR", None) or ""
    return os.path.isfile(os.path.join(started_in, path))


class _Forked:
    """A child forked by the fork server, seen as a `ChildProcess`."""

    def __init__(self, argv: list[str], *, cwd: str, env: dict[str, str]) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # Connections, because multiprocessing hands their file descriptors to the child.
        ends = (Connection(out_w, readable=False), Connection(err_w, readable=False))
        try:
            self._process = context.Process(
                target=_forked_main, args=(argv, cwd, env, *ends), name="smithers-child"
            )
            self._process.start()
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for end in ends:
                end.close()
        self._out, self._err = out_r, err_r
        self._code: int | None = None

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._code

    def send_signal(self, sig: int) -> None:
        if self._code is None:
            os.kill(self.pid, sig)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        assert input is None, "a forked child reads nothing on stdin"
        out, err, _ = await asyncio.gather(
            _read_all(self._out), _read_all(self._err), self._exited()
        )
        return out, err

    async def _exited(self) -> None:
        loop = asyncio.get_running_loop()
        sentinel = self._process.sentinel
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(sentinel, readable)
        try:
            await ended
        finally:
            loop.remove_reader(sentinel)
        self._process.join()  # it ended: reads its status and forgets it
        code = self._process.exitcode
        self._code = code if code is not None else -signal.SIGKILL
        self._process.close()


async def _read_all(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its last writer closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        return await reader.read()
    finally:
        transport.close()


def _forked_main(
    argv: list[str], cwd: str, env: dict[str, str], out: Connection, err: Connection
) -> None:
    """In the forked child: become what ``python -m smithers ARGV`` would be, and run it."""
    os.setsid()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    out.close()
    err.close()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # `python -m` puts the working directory first
    sys.argv = [sys.argv[0], *argv]
    try:
        runpy.run_module("smithers", run_name="__main__", alter_sys=True)  # exits
    finally:
        # `python -m` would run these at exit; multiprocessing ends a child with os._exit.
        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()


async def finish_child(proc: ChildProcess) -> Child:
    """Wait for a child to end and read what it printed."""
    out, err = await proc.communicate()
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    document = None
    lines = out.decode(errors="replace").strip().splitlines()
    if lines:
        try:
            document = msgspec.json.decode(lines[-1])
        except msgspec.DecodeError:
            document = None
    errors = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return Child(code, document, errors[-1] if errors else "")


async def smithers_child(
    location: str,
    args: list[str],
    *,
    cwd: str | None,
    base_url: str | None = None,
) -> Child:
    """Run one ``smithers`` command in a child process to its end."""
    proc = await start_child(location, args, cwd=cwd, base_url=base_url)
    return await finish_child(proc)
